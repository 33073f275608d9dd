"""The in-process limiter: exact sliding logs in dictionaries, for one gateway process.

``acquire`` does every check and every charge synchronously (no ``await`` in between),
so on one event loop it is atomic without locks. Memory stays bounded: log entries older
than the window are pruned lazily, idle scopes are swept once per window, and at most
``max_scopes`` scopes are tracked (the least recently used is forgotten first). Balance
counters are never forgotten: they are authoritative (see ``limits.base``).

The refusal messages live here and are shared with the Redis backend, so both say the
same thing for the same refusal.
"""

from __future__ import annotations

import math
import secrets
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count

from claudestore.core.errors import GatewayError, PaymentRequired, RateLimited
from claudestore.limits.base import PENDING_CREDIT_TTL, Admission, Lease, Scope, Window

# Refusal kinds, in the order they are checked: the longest-lasting reason is reported first.
TOO_LARGE, BALANCE, QUOTA, RPM, TPM, CONCURRENCY = 1, 2, 3, 4, 5, 6
QUOTA_GRACE = 86_400.0  # a quota counter outlives its period by a day
CREDIT_IDS_KEPT = 1024  # applied credit ids remembered per account; older ids count as applied

_SCOPE_WORDS = {"acct": "this account", "key": "this API key"}


def describe_scope(name: str) -> str:
    """``acct:7`` -> "this account", ``key:12`` -> "this API key"."""
    return _SCOPE_WORDS.get(name.partition(":")[0], f"scope {name!r}")


def _span(window: float) -> str:
    return "minute" if window == 60 else f"{window:g} s"


def _usd(nanos: int) -> str:
    text = f"{abs(Decimal(nanos).scaleb(-9)):,.9f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{'-' if nanos < 0 else ''}${whole}.{frac.ljust(2, '0')}"


def retry_seconds(wait: float) -> int:
    """Whole seconds to wait, at least 1."""
    return max(1, math.ceil(wait - 1e-6))


def refusal(
    kind: int,
    admission: Admission,
    scope: Scope | None,
    limit: int,
    wait: float,
    current: int,
    *,
    window: float,
    now: float,
) -> GatewayError:
    """The error for one refusal; ``wait`` in seconds, ``current`` the counter that refused."""
    tokens = admission.tokens
    who = describe_scope(scope.name) if scope is not None else "this account"
    if kind == BALANCE:
        return PaymentRequired(
            f"Insufficient balance: this request reserves up to {_usd(admission.cost_nanos)} and the "
            f"balance of this account is {_usd(current)}; add credit to continue.",
            code="insufficient_balance",
        )
    if kind == TOO_LARGE:
        return RateLimited(
            f"This request reserves {tokens:,} tokens (estimated input + max_tokens), more than the rate "
            f"limit of {limit:,} tokens per {_span(window)} for {who}, so it can never be admitted; "
            "lower max_tokens or shorten the prompt.",
            code="request_too_large_for_tpm",
        )
    if kind == QUOTA:
        assert admission.quota is not None
        end = admission.quota.period_end
        when = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
        seconds = retry_seconds(end - now)
        return RateLimited(
            f"Token quota of {limit:,} tokens for this billing period exceeded for this account "
            f"({current:,} used, this request reserves {tokens:,}); it resets at {when}, "
            f"retry after {seconds} s.",
            code="quota_exceeded",
            retry_after=seconds,
        )
    seconds = retry_seconds(wait)
    if kind == RPM:
        text = f"Rate limit of {limit:,} requests per {_span(window)} exceeded for {who}"
        code = "rate_limit_requests"
    elif kind == TPM:
        text = (
            f"Rate limit of {limit:,} tokens per {_span(window)} exceeded for {who} ({current:,} tokens "
            f"used in the last {_span(window)}, this request reserves {tokens:,})"
        )
        code = "rate_limit_tokens"
    else:
        text = f"Concurrency limit of {limit:,} requests in flight reached for {who}"
        code = "concurrency_limit"
    return RateLimited(f"{text}; retry after {seconds} s.", code=code, retry_after=seconds)


# Expired entries are dropped from the front of a scope's log once there are at least this
# many and at least as many as live ones: memory stays under twice the live log (plus this),
# and each entry is copied about once.
_COMPACT_AT = 64


@dataclass(slots=True, eq=False)
class _ScopeState:
    """A scope's sliding log as two parallel arrays (admission time, tokens), oldest first, from
    index ``head`` on. Arrays of machine doubles and 64-bit integers hold no object per
    admission: a busy minute's log (hundreds of thousands of entries) costs 16 bytes an entry,
    nothing to the garbage collector, and no allocation to make now and free, cache-cold, a
    minute later. Entries are named by a sequence number (``base`` + index) that stays valid
    when expired entries are dropped from the front."""

    at: array[float] = field(default_factory=lambda: array("d"))  # admission times
    # their tokens (the actual use once settled)
    tokens: array[int] = field(default_factory=lambda: array("q"))
    head: int = 0  # index of the oldest entry still in the window
    base: int = 0  # sequence number of index 0
    total: int = 0  # tokens of the entries in the window
    inflight: dict[str, float] = field(default_factory=dict)  # lease id -> lease deadline
    expiry: float = math.inf  # no lease in ``inflight`` has a deadline before this

    def count(self) -> int:
        """Admissions in the window."""
        return len(self.at) - self.head

    def add(self, at: float, tokens: int) -> int:
        """Log an admission; returns its sequence number."""
        self.at.append(at)
        self.tokens.append(tokens)
        self.total += tokens
        return self.base + len(self.at) - 1

    def adjust(self, seq: int, delta: int) -> None:
        """Add ``delta`` tokens to entry ``seq`` if it is still in the window."""
        i = seq - self.base
        if i >= self.head:  # still in the window: it now holds the actual use
            self.tokens[i] += delta
            self.total += delta

    def hold(self, lease_id: str, deadline: float) -> None:
        self.inflight[lease_id] = deadline
        if deadline < self.expiry:
            self.expiry = deadline

    def prune(self, cut: float, now: float) -> None:
        at, head = self.at, self.head
        if head < len(at) and at[head] <= cut:
            tokens, total, n = self.tokens, self.total, len(at)
            while head < n and at[head] <= cut:
                total -= tokens[head]
                head += 1
            self.total = total
            if head >= _COMPACT_AT and 2 * head >= n:
                del at[:head]
                del tokens[:head]
                self.base += head
                head = 0
            self.head = head
        if self.inflight and now >= self.expiry:  # some lease may have expired: look (rarely)
            inflight = self.inflight
            for lease_id in [k for k, deadline in inflight.items() if deadline <= now]:
                del inflight[lease_id]
            self.expiry = min(inflight.values(), default=math.inf)

    def idle(self) -> bool:
        return self.head >= len(self.at) and not self.inflight


class MemoryLimiter:
    def __init__(self, *, window: float = 60.0, lease_ttl: float = 900.0, max_scopes: int = 100_000) -> None:
        self.window = window
        self.lease_ttl = lease_ttl
        self.max_scopes = max_scopes
        self._scopes: OrderedDict[str, _ScopeState] = OrderedDict()
        self._quotas: dict[str, tuple[int, float]] = {}  # name -> (used, forget after)
        self._balances: dict[int, int] = {}
        self._credits: dict[int, tuple[set[int], int | None]] = {}  # account -> (applied ids, floor)
        # Credits that arrived while the account had no counter: account -> id -> (nanos, keep until).
        self._pending: dict[int, dict[int, tuple[int, float]]] = {}
        self._ids = count()
        self._tag = secrets.token_hex(4)
        self._next_sweep = time.time() + window

    def _state(self, name: str) -> _ScopeState:
        state = self._scopes.get(name)
        if state is None:
            state = self._scopes[name] = _ScopeState()
            while len(self._scopes) > self.max_scopes:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(name)
        return state

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.window
        cut = now - self.window
        for name, state in list(self._scopes.items()):
            state.prune(cut, now)
            if state.idle():
                del self._scopes[name]
        for name in [n for n, (_, forget) in self._quotas.items() if forget <= now]:
            del self._quotas[name]
        for account, pending in list(self._pending.items()):
            for credit_id in [i for i, (_, until) in pending.items() if until <= now]:
                del pending[credit_id]
            if not pending:
                del self._pending[account]

    def _quota_used(self, name: str, seed: int, now: float) -> int:
        entry = self._quotas.get(name)
        return entry[0] if entry is not None and entry[1] > now else seed

    async def acquire(self, admission: Admission) -> Lease:
        return self.acquire_now(admission)

    def acquire_now(self, admission: Admission) -> Lease:
        """:meth:`acquire`, which never needs to wait in process, without a coroutine."""
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        window, tokens, cost = self.window, admission.tokens, admission.cost_nanos
        account, quota = admission.account_id, admission.quota

        for scope in admission.scopes:
            if scope.tpm is not None and tokens > scope.tpm:
                raise refusal(TOO_LARGE, admission, scope, scope.tpm, 0.0, 0, window=window, now=now)
        balance, live = 0, None
        if admission.balance_seed is not None:
            if account is None:
                raise ValueError("an admission with a balance_seed needs an account_id")
            live = self._balances.get(account)
            balance = live if live is not None else self._seed(admission, account, now)
            if balance < cost:
                raise refusal(BALANCE, admission, None, 0, 0.0, balance, window=window, now=now)
        used = 0
        if quota is not None:
            used = self._quota_used(quota.name, quota.used_seed, now)
            if used + tokens > quota.limit:
                raise refusal(
                    QUOTA, admission, None, quota.limit, quota.period_end - now, used, window=window, now=now
                )
        cut = now - window
        states: list[_ScopeState] = []
        for scope in admission.scopes:
            state = self._state(scope.name)
            at = state.at
            if (state.head < len(at) and at[state.head] <= cut) or (state.inflight and now >= state.expiry):
                state.prune(cut, now)  # something left the window or a lease may have expired
            states.append(state)
            n = len(at) - state.head
            if scope.rpm is not None and n >= scope.rpm:
                wait = state.at[state.head + n - scope.rpm] + window - now if scope.rpm > 0 else window
                raise refusal(RPM, admission, scope, scope.rpm, wait, n, window=window, now=now)
            if scope.tpm is not None and state.total + tokens > scope.tpm:
                need, wait = state.total + tokens - scope.tpm, window
                for i in range(state.head, len(state.at)):
                    need -= state.tokens[i]
                    if need <= 0:
                        wait = state.at[i] + window - now
                        break
                raise refusal(TPM, admission, scope, scope.tpm, wait, state.total, window=window, now=now)
            if scope.concurrency is not None and len(state.inflight) >= scope.concurrency:
                raise refusal(
                    CONCURRENCY,
                    admission,
                    scope,
                    scope.concurrency,
                    1.0,
                    len(state.inflight),
                    window=window,
                    now=now,
                )

        # Every check passed: charge everything (still no await since the first check).
        lease_id = f"{self._tag}{next(self._ids)}"
        deadline = now + self.lease_ttl
        entries: list[tuple[int, _ScopeState]] = []
        holds: list[_ScopeState] = []
        requests: Window | None = None  # the tightest of each kind (the first one on a tie)
        token_window: Window | None = None
        for scope, state in zip(admission.scopes, states, strict=True):
            rpm, tpm = scope.rpm, scope.tpm
            if rpm is not None or tpm is not None:
                at = state.at  # state.add(now, tokens), inlined
                at.append(now)
                state.tokens.append(tokens)
                state.total += tokens
                entries.append((state.base + len(at) - 1, state))
                reset = at[state.head] + window
                if rpm is not None:
                    left = rpm - (len(at) - state.head)
                    if requests is None or left < requests.remaining:
                        requests = Window(rpm, left, reset)
                if tpm is not None:
                    left = tpm - state.total
                    if token_window is None or left < token_window.remaining:
                        token_window = Window(tpm, left, reset)
            if scope.concurrency is not None:
                state.hold(lease_id, deadline)
                holds.append(state)
        if quota is not None:
            self._quotas[quota.name] = (used + tokens, quota.period_end + QUOTA_GRACE)
        if admission.balance_seed is not None and account is not None:
            if live is None:  # the first admission of this account: the counter is seeded
                self._seeded(account, admission.balance_credit_id)
            self._balances[account] = balance - cost
        return Lease(
            admission, requests, token_window, extra={"id": lease_id, "entries": entries, "holds": holds}
        )

    async def settle(self, lease: Lease, actual_tokens: int, actual_cost_nanos: int) -> None:
        self.settle_now(lease, actual_tokens, actual_cost_nanos)

    def settle_now(self, lease: Lease, actual_tokens: int, actual_cost_nanos: int) -> bool:
        """:meth:`settle`, which never needs to wait in process, without a coroutine (always True:
        settled, as the Redis backend's ``settle_now`` answers when it could send)."""
        if lease.settled:
            return True
        lease.settled = True
        admission, now = lease.admission, time.time()
        delta = actual_tokens - admission.tokens
        extra = lease.extra
        entries: list[tuple[int, _ScopeState]] = extra["entries"]  # type: ignore[assignment]
        holds: list[_ScopeState] = extra["holds"]  # type: ignore[assignment]
        for seq, state in entries:
            state.adjust(seq, delta)
        if holds:
            lease_id = extra["id"]
            for state in holds:
                state.inflight.pop(lease_id, None)  # type: ignore[call-overload]
        quota = admission.quota
        if quota is not None and (entry_q := self._quotas.get(quota.name)) is not None and entry_q[1] > now:
            self._quotas[quota.name] = (entry_q[0] + delta, entry_q[1])
        account = admission.account_id
        if admission.balance_seed is not None and account is not None and account in self._balances:
            self._balances[account] += admission.cost_nanos - actual_cost_nanos
        return True

    def _seed(self, admission: Admission, account: int, now: float) -> int:
        """The balance a counter would be seeded with: the seed and the credits kept for it that
        the seed does not include."""
        seed = admission.balance_seed or 0
        pending = self._pending.get(account)
        if pending:
            since = admission.balance_credit_id
            seed += sum(n for i, (n, until) in pending.items() if i > since and until > now)
        return seed

    def _seeded(self, account: int, credit_id: int) -> None:
        """The counter was seeded with every credit up to ``credit_id`` and those kept: all applied."""
        self._pending.pop(account, None)
        applied, floor = self._credits.get(account, (set(), None))
        if credit_id > 0 and (floor is None or credit_id > floor):
            self._credits[account] = ({i for i in applied if i > credit_id}, credit_id)

    async def credit(
        self, account_id: int, nanos: int, credit_id: int, created_at: float | None = None
    ) -> None:
        applied, floor = self._credits.get(account_id, (set(), None))
        if credit_id in applied or (floor is not None and credit_id <= floor):
            return
        applied.add(credit_id)
        if len(applied) > CREDIT_IDS_KEPT:
            oldest = min(applied)
            applied.discard(oldest)
            floor = oldest if floor is None else max(floor, oldest)
        self._credits[account_id] = (applied, floor)
        if account_id in self._balances:
            self._balances[account_id] += nanos
            return
        # No counter yet: kept for the seed, which adds it unless it includes it already.
        now = time.time()
        until = (now if created_at is None else created_at) + PENDING_CREDIT_TTL
        if until > now:
            self._pending.setdefault(account_id, {})[credit_id] = (nanos, until)

    async def balance(self, account_id: int) -> int | None:
        return self._balances.get(account_id)

    async def quota_used(self, name: str) -> int | None:
        entry = self._quotas.get(name)
        return entry[0] if entry is not None and entry[1] > time.time() else None

    async def close(self) -> None:
        return None
