"""The accounting around one request: policy, admission, settlement and the ledger row.

``Accounting.admit`` runs before the upstream is called: model allowed, then one atomic
limiter admission that reserves a request slot, tokens (estimated input + max_tokens),
quota and worst-case cost. ``Accounting.settle`` runs exactly once when the request is
over, in every outcome: it prices the upstream-reported usage, settles the lease with the
real figures and hands one row to the ledger writer (which never blocks). When nothing in
it has to wait (prices in memory, the in-process limiter), ``Accounting.settle_now`` does
the same without a coroutine, so the request path needs no task to shield it; on Redis
it sends the settlement without awaiting the reply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from claudestore.admission.policy import Policy, PolicyCache
from claudestore.billing.ledger import LedgerRow, LedgerWriter
from claudestore.billing.pricing import PriceCache, PriceTable, estimate_input_tokens
from claudestore.limits.base import Admission, Lease, Limiter
from claudestore.server.outcome import Outcome
from claudestore.storage.auth import KeyInfo

log = logging.getLogger("claudestore.accounting")


@dataclass(slots=True)
class Ticket:
    policy: Policy
    lease: Lease | None


class Accounting:
    def __init__(
        self, limiter: Limiter, policies: PolicyCache, prices: PriceCache, ledger: LedgerWriter
    ) -> None:
        self.limiter = limiter
        self.policies = policies
        self.prices = prices
        self.ledger = ledger
        # What can be done without awaiting, looked up once: the in-process limiter's
        # acquire_now / settle_now (Redis: no acquire_now; a settle_now that sends without
        # awaiting) and the price table in memory (LivePrices.current).
        self._acquire_now = getattr(limiter, "acquire_now", None)
        self._settle_lease_now = getattr(limiter, "settle_now", None)
        self._current_prices = getattr(prices, "current", None)

    async def policy(self, key: KeyInfo) -> Policy:
        policy = await self.policies.get(key.id)
        if policy.refusal is not None:
            raise policy.refusal
        return policy

    def admit_now(self, policy: Policy, model: str, body_bytes: int, max_tokens: int) -> Ticket | None:
        """:meth:`admit` without awaiting, when nothing has to wait (prices in memory and fresh,
        the limiter in process); None: nothing was done (await :meth:`admit`). Raises the
        refusal as :meth:`admit` does."""
        policy.check_model(model)
        if _unlimited(policy):
            return Ticket(policy, None)  # an operator key without limits
        acquire_now = self._acquire_now
        if acquire_now is None:
            return None  # a limiter elsewhere (Redis)
        table = None
        if policy.balance_seed is not None:
            current = self._current_prices
            table = current() if current is not None else None
            if table is None:
                return None  # to be loaded: admit() awaits it
        return Ticket(policy, acquire_now(_admission(policy, model, body_bytes, max_tokens, table)))

    async def admit(self, policy: Policy, model: str, body_bytes: int, max_tokens: int) -> Ticket:
        policy.check_model(model)
        if _unlimited(policy):
            return Ticket(policy, None)  # an operator key without limits
        table = None
        if policy.balance_seed is not None:
            current = self._current_prices
            table = current() if current is not None else None
            if table is None:
                table = await self.prices.get()
        admission = _admission(policy, model, body_bytes, max_tokens, table)
        return Ticket(policy, await self.limiter.acquire(admission))

    def settle_now(self, ticket: Ticket | None, out: Outcome) -> bool:
        """:meth:`settle` without awaiting, when nothing has to wait: the price table is in
        memory and fresh, the limiter is in process. True: settled; False: nothing was done
        (await :meth:`settle`). Never raises."""
        if out.key_id is None:
            return True  # not authenticated: nothing to bill, no one to bill
        table = None
        if _priced(out):
            current = self._current_prices
            table = current() if current is not None else None
            if table is None:
                return False  # to be loaded: settle() awaits it
        lease = ticket.lease if ticket is not None else None
        settle_lease = None
        if lease is not None:
            settle_lease = self._settle_lease_now
            if settle_lease is None:
                return False  # a limiter that has to be awaited: settle() does
        cost = self._cost(table, ticket, out)
        if settle_lease is not None:
            try:
                if not settle_lease(lease, _tokens(out), cost):
                    return False  # nothing was done: settle() awaits the limiter
            except Exception:
                log.exception(SETTLE_FAILED, out.request_id)
        self._record(ticket, out, cost)
        return True

    async def settle(self, ticket: Ticket | None, out: Outcome) -> None:
        """Price, settle and record one finished request. Never raises."""
        if out.key_id is None:
            return  # not authenticated: nothing to bill, no one to bill
        table = None
        if _priced(out):
            try:
                table = await self.prices.get()
            except Exception:
                log.exception(PRICING_FAILED, out.request_id)
        cost = self._cost(table, ticket, out)
        if ticket is not None and ticket.lease is not None:
            try:
                await self.limiter.settle(ticket.lease, _tokens(out), cost)
            except Exception:
                log.exception(SETTLE_FAILED, out.request_id)
        self._record(ticket, out, cost)

    @staticmethod
    def _cost(table: PriceTable | None, ticket: Ticket | None, out: Outcome) -> int:
        if table is None:
            return 0
        try:
            multiplier = ticket.policy.multiplier if ticket is not None else 1
            return table.cost_nanos(out.model, out.usage, multiplier)
        except Exception:
            log.exception(PRICING_FAILED, out.request_id)
            return 0

    def _record(self, ticket: Ticket | None, out: Outcome, cost: int) -> None:
        out.cost_nanos = cost
        account_id = ticket.policy.account_id if ticket is not None else out.account_id
        self.ledger.record(LedgerRow.from_outcome(out, account_id=account_id, cost_nanos=cost))


# Token counts the limiters hold are capped here: far above any limit (a reservation this large
# is refused by any tpm or quota), and within what both backends count exactly (64-bit integers
# in process, doubles in Redis's Lua), whatever max_tokens a client sends or usage an upstream
# reports.
MAX_TOKENS = 2**53 - 1

PRICING_FAILED = "pricing request %s failed; its ledger row is recorded unpriced"
SETTLE_FAILED = "settling the limiter lease of request %s failed"


def _unlimited(policy: Policy) -> bool:
    return not policy.scopes and policy.quota is None and policy.balance_seed is None


def _admission(
    policy: Policy, model: str, body_bytes: int, max_tokens: int, table: PriceTable | None
) -> Admission:
    """What to reserve: estimated input + ``max_tokens``, and their worst-case cost when the
    balance is enforced (``table`` is then the price table)."""
    input_estimate = estimate_input_tokens(body_bytes)
    tokens = min(input_estimate + max_tokens, MAX_TOKENS)
    cost = 0
    if table is not None:
        cost = table.reserve_nanos(model, input_estimate, max_tokens, policy.multiplier)
    return Admission(
        scopes=policy.scopes,
        tokens=tokens,
        account_id=policy.account_id,
        cost_nanos=cost,
        balance_seed=policy.balance_seed,
        quota=policy.quota,
        balance_credit_id=policy.balance_credit_id,
    )


def _priced(out: Outcome) -> bool:
    """The request used tokens of a known model: it has a price to look up."""
    return out.model is not None and bool(out.usage.prompt_tokens or out.usage.output_tokens)


def _tokens(out: Outcome) -> int:
    u = out.usage
    return min(u.input_tokens + u.output_tokens + u.cache_write_tokens + u.cache_read_tokens, MAX_TOKENS)


class LivePrices(PriceCache):
    """A :class:`PriceCache` that also hands out the table it holds without awaiting."""

    def current(self) -> PriceTable | None:
        """The table when it is loaded and fresh; None when :meth:`get` would have to load it."""
        table = self._table
        return table if table is not None and self._fresh() else None
