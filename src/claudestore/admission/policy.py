"""The policy of an API key: allowed models, limits, quota, balance, price multiplier.

Read from the database (key → account → active subscription → plan) and cached per key
for ``ttl`` seconds, so a request costs no database round trip; a change made by an
operator (new plan, revoked account, new limits) takes effect within ``ttl``. The
balance read here only seeds the limiter's live counter (see ``limits.base``), and so
does the quota's use in the period, which is a sum over the period's ledger rows: it is
read only while the limiter has no live counter for that quota (after a start, or in a
new period), never on every reload, since that sum grows with every request.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from claudestore.accounts.usage import tokens_since
from claudestore.core.errors import GatewayError, PermissionDenied
from claudestore.limits.base import Quota, Scope
from claudestore.storage.billing_models import Account, CreditEntry, Plan, Subscription
from claudestore.storage.db import Database
from claudestore.storage.models import ApiKey


@dataclass(frozen=True, slots=True)
class Policy:
    key_id: int
    account_id: int | None  # None: an operator key (no plan, no limits, no balance)
    scopes: tuple[Scope, ...] = ()
    plan_models: tuple[str, ...] | None = None  # fnmatch patterns; None = any
    key_models: tuple[str, ...] | None = None
    quota: Quota | None = None
    balance_seed: int | None = None
    balance_credit_id: int = 0  # the newest credit entry balance_seed includes (limits.base)
    multiplier: Decimal = Decimal(1)
    plan_name: str | None = None
    refusal: GatewayError | None = None  # the key may not be used at all right now
    # Models already found allowed (routed public names: a bounded set), so that a request
    # costs a set lookup instead of the pattern matching.
    _allowed: set[str] = field(default_factory=set, compare=False, repr=False)

    def check_model(self, model: str) -> None:
        if model in self._allowed:
            return
        for patterns, whose in ((self.plan_models, "your plan"), (self.key_models, "this API key")):
            if patterns is not None and not any(fnmatch.fnmatchcase(model, p) for p in patterns):
                allowed = ", ".join(patterns) or "none"
                raise PermissionDenied(
                    f"Model {model!r} is not included in {whose} (allowed: {allowed}).",
                    code="model_not_allowed",
                )
        if len(self._allowed) < 1024:
            self._allowed.add(model)


OPERATOR = "operator"


QuotaProbe = Callable[[str], Awaitable["int | None"]]


async def _no_live_quota(name: str) -> int | None:
    return None


async def load_policy(db: Database, key_id: int, live_quota: QuotaProbe = _no_live_quota) -> Policy:
    now = datetime.now(UTC)
    async with db.session() as session:
        key = await session.get(ApiKey, key_id)
        if key is None:  # deleted since it was authenticated
            return Policy(key_id, None, refusal=PermissionDenied("This API key no longer exists."))
        key_models = tuple(key.allowed_models) if key.allowed_models is not None else None
        key_scope = Scope(f"key:{key.id}", key.rpm_limit, key.tpm_limit, key.concurrency_limit)
        key_scopes = (key_scope,) if (key.rpm_limit or key.tpm_limit or key.concurrency_limit) else ()
        if key.account_id is None:
            return Policy(key.id, None, scopes=key_scopes, key_models=key_models)
        # The balance and the newest credit entry it includes, in one statement (one snapshot).
        newest_credit = (
            select(func.max(CreditEntry.id)).where(CreditEntry.account_id == Account.id).scalar_subquery()
        )
        found = (
            await session.execute(select(Account, newest_credit).where(Account.id == key.account_id))
        ).first()
        account, credit_id = found if found is not None else (None, None)
        if account is None or account.disabled_at is not None:
            refusal = PermissionDenied("This account is disabled; contact the operator of this gateway.")
            return Policy(key.id, key.account_id, refusal=refusal)
        row = (
            await session.execute(
                select(Subscription, Plan)
                .join(Plan, Plan.id == Subscription.plan_id)
                .where(
                    Subscription.account_id == account.id,
                    Subscription.status == "active",
                    Subscription.period_start <= now,
                    Subscription.period_end > now,
                )
                .order_by(Subscription.period_start.desc())
                .limit(1)
            )
        ).first()
        if row is None:
            refusal = PermissionDenied(
                "This account has no active plan. Choose a plan (or redeem a code) before calling the API."
            )
            return Policy(key.id, account.id, refusal=refusal)
        sub, plan = row
        quota = None
        if plan.quota_tokens is not None:
            name = f"quota:{account.id}:{int(sub.period_start.timestamp())}"
            used = await live_quota(name)
            if used is None:  # no live counter: seed it from the ledger
                used = await tokens_since(session, account.id, sub.period_start)
            quota = Quota(
                name=name,
                limit=plan.quota_tokens,
                used_seed=int(used or 0),
                period_end=sub.period_end.timestamp(),
            )
        plan_scope = Scope(f"acct:{account.id}", plan.rpm, plan.tpm, plan.max_concurrency)
        scopes = (*key_scopes, plan_scope) if (plan.rpm or plan.tpm or plan.max_concurrency) else key_scopes
        return Policy(
            key.id,
            account.id,
            scopes=scopes,
            plan_models=tuple(plan.allowed_models) if plan.allowed_models is not None else None,
            key_models=key_models,
            quota=quota,
            balance_seed=account.balance_nanos,
            balance_credit_id=int(credit_id or 0),
            multiplier=Decimal(plan.price_multiplier),
            plan_name=plan.name,
        )


class PolicyCache:
    """Per-key policies with bounded staleness; concurrent misses for one key share one load."""

    def __init__(
        self,
        db: Database,
        ttl: float = 5.0,
        max_entries: int = 100_000,
        live_quota: QuotaProbe = _no_live_quota,
    ) -> None:
        self._db = db
        self._live_quota = live_quota
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[int, tuple[float, Policy]] = {}
        self._loading: dict[int, asyncio.Future[Policy]] = {}

    async def get(self, key_id: int) -> Policy:
        entry = self._entries.get(key_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._loading.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Policy] = asyncio.get_running_loop().create_future()
        self._loading[key_id] = future
        try:
            policy = await load_policy(self._db, key_id, self._live_quota)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self._loading.pop(key_id, None)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key_id] = (time.monotonic() + self._ttl, policy)
        future.set_result(policy)
        return policy

    def invalidate(self, key_id: int | None = None) -> None:
        if key_id is None:
            self._entries.clear()
        else:
            self._entries.pop(key_id, None)
