"""The limiter contract: admit a request against rate limits, concurrency, token quota
and credit balance in one atomic step, then settle it with what it really used.

Two backends implement it: ``memory`` (one process; the embedded default) and ``redis``
(any number of gateway processes enforce one limit, through server-side Lua scripts).

Admission is all-or-nothing: either every check passes and every counter is charged
(a request slot, the reserved tokens, a concurrency slot, the reserved quota tokens and
the reserved cost), or nothing is charged and ``RateLimited`` / ``PaymentRequired`` is
raised with ``retry_after`` set where waiting helps.

Settlement replaces reservations with actual use: TPM and quota counters get
``actual_tokens - reserved_tokens`` added, the balance gets ``reserved_cost -
actual_cost`` given back, and the concurrency slot is released. Settling a lease twice
is a no-op.

Balances: the limiter's balance counter for an account is authoritative while it
exists. It is seeded once from ``Admission.balance_seed`` (the database balance) when
absent, and afterwards only moves by reservations, settlements and ``credit()``
(top-ups, applied exactly once per ``credit_id``).

A seed is read from the database at one moment and used a little later (policies are
cached), while credits reach the limiter on their own path (the admin API's hook, the
poller): either may come first. So a seed carries ``balance_credit_id``, the newest credit
entry of the account its balance includes (entries of one account commit in id order:
each takes the account row's lock before its id), and the limiter keeps the credits that
arrive while the counter is absent (for ``PENDING_CREDIT_TTL``): seeding adds those newer
than ``balance_credit_id`` and counts every id up to it as applied. A top-up is then
counted exactly once whichever comes first, the seed or the credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

#: How long a credit that arrived while its account had no balance counter is kept for the seed.
#: A seed read before the credit was committed is used at most a policy TTL (seconds) later.
PENDING_CREDIT_TTL = 600.0


@dataclass(frozen=True, slots=True)
class Scope:
    """One set of limits on one counter namespace, e.g. ``acct:7`` (the plan's) or ``key:12``."""

    name: str
    rpm: int | None = None  # requests in any 60 s window
    tpm: int | None = None  # input + output tokens in any 60 s window
    concurrency: int | None = None  # requests in flight


@dataclass(frozen=True, slots=True)
class Quota:
    """A token quota for one period of a subscription."""

    name: str  # counter name, unique per account and period, e.g. "quota:7:1764547200"
    limit: int  # tokens allowed in the period
    used_seed: int  # tokens used in the period per the database, used only to seed the counter
    period_end: float  # unix time; the counter may expire after it


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs more, once per request
class Admission:
    scopes: tuple[Scope, ...]
    tokens: int  # tokens reserved against TPM and quota: estimated input + max_tokens
    account_id: int | None = None
    cost_nanos: int = 0  # worst-case cost reserved against the balance
    balance_seed: int | None = None  # database balance; None = this account's balance is not enforced
    quota: Quota | None = None
    balance_credit_id: int = 0  # the newest credit entry the seed includes (0: none)


@dataclass(slots=True)
class Window:
    """Rate-limit state of the tightest scope, for the response headers."""

    limit: int
    remaining: int
    reset_at: float  # unix time when the window has room again


@dataclass(slots=True)
class Lease:
    admission: Admission
    requests: Window | None = None
    tokens: Window | None = None
    settled: bool = False
    extra: dict[str, object] = field(default_factory=dict)  # backend bookkeeping


class Limiter(Protocol):
    async def acquire(self, admission: Admission) -> Lease:
        """Admit or raise ``RateLimited`` (rpm, tpm, concurrency, quota) / ``PaymentRequired`` (balance)."""
        ...

    async def settle(self, lease: Lease, actual_tokens: int, actual_cost_nanos: int) -> None: ...

    async def credit(
        self, account_id: int, nanos: int, credit_id: int, created_at: float | None = None
    ) -> None:
        """Add credit to a live balance counter, once per ``credit_id``. While the counter is
        absent the credit is kept (``PENDING_CREDIT_TTL`` from ``created_at``, unix time, default
        now) for the seed to add if the seed does not include it; an older one is dropped, since
        no seed read before it is still in use."""
        ...

    async def balance(self, account_id: int) -> int | None:
        """The live balance counter, or None when it is not seeded."""
        ...

    async def quota_used(self, name: str) -> int | None:
        """The live counter of quota ``name`` (tokens used in its period), or None when it is not
        seeded: only then does the policy loader need the database's sum to seed it."""
        ...

    async def close(self) -> None: ...
