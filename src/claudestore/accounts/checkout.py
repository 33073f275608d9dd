"""A customer choosing a plan themselves (the web store), as opposed to the operator subscribing them.

Only public, unarchived plans can be chosen. A plan that costs nothing starts at once; a
trial plan (``trial``) at most once per account. A paid plan goes through the payment
provider (``payments.PaymentProvider``): the credits-only provider pays from the balance at
once; a hosted-checkout provider returns a pending session with a URL to send the customer to.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import repository, subscriptions
from claudestore.accounts.fields import Conflict
from claudestore.accounts.payments import CheckoutSession, PaymentProvider
from claudestore.accounts.plans import get_plan
from claudestore.core.errors import InvalidRequest, NotFound


async def choose_plan(
    session: AsyncSession, account_id: int, plan_id: int, provider: PaymentProvider
) -> CheckoutSession:
    plan = await get_plan(session, plan_id)
    if not plan.public:
        raise NotFound(f"No plan with id {plan_id}.")  # private plans are the operator's to give
    if plan.archived_at is not None:
        raise InvalidRequest(f"Plan {plan.name!r} is no longer offered; choose another plan.")
    if plan.trial:
        history = await repository.subscriptions(session, account_id)
        if any(p.trial and p.id == plan.id for _, p in history):
            raise Conflict(f"The {plan.name} trial can be taken once per account; choose another plan.")
    if Decimal(plan.price_usd) == 0:
        subscribed = await subscriptions.subscribe(session, account_id, plan.id)
        return CheckoutSession(
            id=f"free_{subscribed.subscription.id}",
            provider="free",
            account_id=account_id,
            plan_id=plan.id,
            amount_nanos=0,
            status="paid",
            subscription_id=subscribed.subscription.id,
            credit_entries=(subscribed.grant,) if subscribed.grant is not None else (),
        )
    return await provider.create_checkout(session, account_id, plan.id)
