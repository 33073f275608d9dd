"""The accounting around one request: policy, admission, settlement and the ledger row.

``Accounting.admit`` runs before the upstream is called: model allowed, then one atomic
limiter admission that reserves a request slot, tokens (estimated input + max_tokens),
quota and worst-case cost. ``Accounting.settle`` runs exactly once when the request is
over, in every outcome: it prices the upstream-reported usage, settles the lease with the
real figures and hands one row to the ledger writer (which never blocks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from claudestore.admission.policy import Policy, PolicyCache
from claudestore.billing.ledger import LedgerRow, LedgerWriter
from claudestore.billing.pricing import PriceCache, estimate_input_tokens
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

    async def policy(self, key: KeyInfo) -> Policy:
        policy = await self.policies.get(key.id)
        if policy.refusal is not None:
            raise policy.refusal
        return policy

    async def admit(self, policy: Policy, model: str, body_bytes: int, max_tokens: int) -> Ticket:
        policy.check_model(model)
        if not policy.scopes and policy.quota is None and policy.balance_seed is None:
            return Ticket(policy, None)  # an operator key without limits
        input_estimate = estimate_input_tokens(body_bytes)
        cost = 0
        if policy.balance_seed is not None:
            table = await self.prices.get()
            cost = table.reserve_nanos(model, input_estimate, max_tokens, policy.multiplier)
        admission = Admission(
            scopes=policy.scopes,
            tokens=input_estimate + max_tokens,
            account_id=policy.account_id,
            cost_nanos=cost,
            balance_seed=policy.balance_seed,
            quota=policy.quota,
        )
        return Ticket(policy, await self.limiter.acquire(admission))

    async def settle(self, ticket: Ticket | None, out: Outcome) -> None:
        """Price, settle and record one finished request. Never raises."""
        if out.key_id is None:
            return  # not authenticated: nothing to bill, no one to bill
        cost = 0
        try:
            if out.model is not None and (out.usage.prompt_tokens or out.usage.output_tokens):
                table = await self.prices.get()
                multiplier = ticket.policy.multiplier if ticket is not None else 1
                cost = table.cost_nanos(out.model, out.usage, multiplier)
        except Exception:
            log.exception("pricing request %s failed; its ledger row is recorded unpriced", out.request_id)
        if ticket is not None and ticket.lease is not None:
            u = out.usage
            tokens = u.input_tokens + u.output_tokens + u.cache_write_tokens + u.cache_read_tokens
            try:
                await self.limiter.settle(ticket.lease, tokens, cost)
            except Exception:
                log.exception("settling the limiter lease of request %s failed", out.request_id)
        out.cost_nanos = cost
        account_id = ticket.policy.account_id if ticket is not None else out.account_id
        self.ledger.record(LedgerRow.from_outcome(out, account_id=account_id, cost_nanos=cost))
