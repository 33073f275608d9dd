"""Per-client throttling of failed authentication (SECURITY.md, point 6).

Every credential check the gateway makes (an API key on ``/v1/messages``,
``/v1/chat/completions``, ``count_tokens``, ``/v1/models`` and ``/v1/account``; the admin
key on ``/admin``; the metrics token on ``/metrics``) reports a failure to one
:class:`AuthThrottle` per process, keyed by the client's address. Once an address has
failed ``limit`` times within ``window`` seconds of its first failure, it is throttled
until that window ends: the caller gets 429 ``rate_limit_error`` with ``retry-after``, in
the shape of the API it called, and the credential is not looked up at all.

Rules (and why):

* Only failures count. A successful authentication neither counts nor resets the count,
  so an attacker cannot interleave a valid key to keep guessing.
* A missing credential does not count: it guesses nothing and costs no lookup.
* Requests refused while throttled do not count either: a client that waits out
  ``retry-after`` gets a fresh window.
* While an address is throttled, an API key that the :class:`KeyAuthenticator` already
  holds in its positive cache (a key this process has looked up and found, so not a guess)
  is still checked and served: a customer behind the same NAT as a scanner keeps working.
  Anything else is refused before it is looked up (no cache miss, no query). The admin key
  and the metrics token have no such exemption: they may be password-like, and letting the
  right one through while throttled would turn the 429 into a guessing oracle.
* The client is the ASGI peer address (uvicorn already resolves ``X-Forwarded-For`` for the
  peers it trusts: ``FORWARDED_ALLOW_IPS``, 127.0.0.1 and ::1 by default). When the peer is
  one of ``server.trusted_proxies``, the rightmost ``X-Forwarded-For`` entry that is not a
  trusted proxy is the client. IPv6 clients are counted per /64, the block one host
  usually holds.
* Memory is bounded: at most ``max_clients`` addresses are tracked; past that the one
  whose last failure is oldest is forgotten first, and stale entries are pruned as new
  ones arrive. A flood of distinct (spoofed or IPv6) addresses can therefore push out an
  older entry, but never grow memory.

The counts are per process: with ``server.workers`` > 1 an address may fail ``limit``
times in each worker. The success path costs one dict lookup on the client's address
(none while no address has failed).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, MutableMapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from claudestore.core.errors import AuthenticationFailed, RateLimited

if TYPE_CHECKING:
    from claudestore.config import ServerConfig
    from claudestore.storage.auth import KeyInfo

__all__ = ["AuthThrottle", "throttled_message"]

Scope = MutableMapping[str, Any]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MISSING_KEY_CODE = "missing_api_key"  # storage.auth: no credential at all, not counted
_PRUNE_PER_INSERT = 2  # stale entries dropped (at most) each time a new address is tracked


def throttled_message(seconds: float) -> str:
    return (
        "Too many failed authentication attempts from this address; "
        f"retry after {max(1, math.ceil(seconds))} s."
    )


class _Authenticator(Protocol):
    async def authenticate(self, raw: str | None) -> KeyInfo: ...

    def knows(self, raw: str | None) -> bool: ...


class _Window:
    """One address: when its current window began and how many failures it holds."""

    __slots__ = ("failures", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.failures = 0


@lru_cache(maxsize=4096)
def _bucket(host: str) -> str:
    """The throttling key of an address: IPv4 as is, IPv6 by its /64 (IPv4-mapped as IPv4)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host[:64]  # not an address (a test transport, a broken proxy): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def _parse(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    entry = entry.strip()
    if entry.startswith("["):  # [v6]:port
        entry = entry[1 : entry.find("]")]
    elif entry.count(":") == 1:  # v4:port
        entry = entry.partition(":")[0]
    try:
        return ipaddress.ip_address(entry)
    except ValueError:
        return None


class AuthThrottle:
    """Counts failed authentications per client address and refuses a client over the limit."""

    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        *,
        max_clients: int = 100_000,
        trusted_proxies: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or max_clients < 1:
            raise ValueError("limit and max_clients must be at least 1, window greater than 0")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )
        # Whether a peer is a trusted proxy, parsed once per peer (bounded).
        self._peer_trusted = lru_cache(maxsize=1024)(lambda host: self._is_trusted(_parse(host)))
        self._clock = clock
        self._clients: OrderedDict[str, _Window] = OrderedDict()  # least recently failed first
        self.failures = 0  # failed authentications counted (metrics)
        self.refused = 0  # requests refused while their address was throttled (metrics)

    @classmethod
    def from_config(cls, server: ServerConfig) -> AuthThrottle | None:
        """The throttle ``server.auth_failures`` describes; None when ``limit`` is 0 (off)."""
        cfg = server.auth_failures
        if cfg.limit == 0:
            return None
        return cls(
            cfg.limit,
            cfg.window_seconds,
            max_clients=cfg.max_clients,
            trusted_proxies=server.trusted_proxies,
        )

    def __len__(self) -> int:
        return len(self._clients)

    # -- who is the client ----------------------------------------------------------------

    def client_of(self, scope: Scope) -> str | None:
        """The throttling key for a request's client; None when the server gave no peer."""
        peer = scope.get("client")
        if not peer:
            return None
        host: str = peer[0]
        if self._trusted and self._peer_trusted(host):
            forwarded = self._forwarded(scope.get("headers") or ())
            if forwarded is not None:
                host = forwarded
        return _bucket(host) if ":" in host else host  # the server's IPv4 text is canonical already

    def _is_trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._trusted)

    def _forwarded(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The rightmost X-Forwarded-For entry that is not a trusted proxy (every header line
        of it, in order); the leftmost when all are trusted; None without the header."""
        values = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
        entries = [e.strip() for e in ",".join(values).split(",") if e.strip()]
        if not entries:
            return None
        for entry in reversed(entries):
            ip = _parse(entry)
            if not self._is_trusted(ip):
                return str(ip) if ip is not None else entry[:64]
        ip = _parse(entries[0])
        return str(ip) if ip is not None else entries[0][:64]

    # -- counting ---------------------------------------------------------------------------

    def retry_after(self, client: str | None) -> float | None:
        """Seconds until ``client`` may try again, or None when it is not throttled."""
        if client is None:
            return None
        entry = self._clients.get(client)
        if entry is None or entry.failures < self.limit:
            return None
        left = entry.start + self.window - self._clock()
        return left if left > 0 else None

    def check(self, client: str | None) -> None:
        """Raise :class:`RateLimited` (with ``retry_after``) when ``client`` is throttled."""
        if not self._clients:
            return
        left = self.retry_after(client)
        if left is not None:
            raise self.refuse(client, left)

    def refuse(self, client: str | None, left: float) -> RateLimited:
        """The error for a throttled request (counted; the address stays recently active)."""
        self.refused += 1
        if client is not None and client in self._clients:
            self._clients.move_to_end(client)
        return RateLimited(throttled_message(left), code="auth_throttled", retry_after=math.ceil(left))

    def failed(self, client: str | None) -> None:
        """Count one failed authentication for ``client``."""
        self.failures += 1
        if client is None:
            return
        clients = self._clients
        now = self._clock()
        entry = clients.get(client)
        if entry is None or now - entry.start >= self.window:
            if entry is None:
                self._prune(now)
                while len(clients) >= self.max_clients:
                    clients.popitem(last=False)
            entry = clients[client] = _Window(now)
        clients.move_to_end(client)
        entry.failures += 1

    def _prune(self, now: float) -> None:
        clients = self._clients
        for _ in range(_PRUNE_PER_INSERT):
            if not clients:
                return
            oldest = next(iter(clients))
            if now - clients[oldest].start < self.window:
                return
            del clients[oldest]

    # -- API keys -------------------------------------------------------------------------

    async def guard(self, auth: _Authenticator, raw: str | None, scope: Scope) -> KeyInfo:
        """``auth.authenticate(raw)`` for the request ``scope``: refused with 429 while the
        client is throttled (unless ``auth`` already knows the key), failures counted."""
        if self._clients:
            client = self.client_of(scope)
            left = self.retry_after(client)
            if left is not None and not auth.knows(raw):
                raise self.refuse(client, left)
        try:
            return await auth.authenticate(raw)
        except AuthenticationFailed as exc:
            if exc.code != MISSING_KEY_CODE:
                self.failed(self.client_of(scope))
            raise
