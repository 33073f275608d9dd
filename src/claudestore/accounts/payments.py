"""Paying for plans: one interface for every payment provider.

:class:`PaymentProvider` has two steps. ``create_checkout`` starts paying for a plan:
a provider with a hosted payment page (Stripe Checkout, say) returns a *pending*
session whose ``url`` the customer is sent to, and later confirms it through
``handle_webhook`` (verifying the provider's signature), which subscribes the account;
a provider that can pay at once returns a *paid* session. Both write through the
account services in the caller's transaction, and the caller commits, then reports
``credit_entries`` to the gateway's limiter (``on_credit``).

:class:`CreditsOnlyProvider` pays from the account's balance: it debits the plan's
price as a negative ``purchase`` credit entry and subscribes, in one transaction. The
balance checked is the database's; the gateway's live counter may be a little lower
while requests are in flight, and settles the difference as they finish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from claudestore.accounts import credit, repository, subscriptions
from claudestore.accounts.money import format_usd, usd_to_nanos
from claudestore.accounts.plans import get_plan
from claudestore.core.errors import InvalidRequest, NotFound, PaymentRequired, Unsupported
from claudestore.storage.billing_models import CreditEntry


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    provider: str
    account_id: int
    plan_id: int
    amount_nanos: int  # what the plan costs for one period
    status: Literal["pending", "paid"]
    url: str | None = None  # where to send the customer to pay (pending sessions)
    subscription_id: int | None = None  # set once paid
    credit_entries: tuple[CreditEntry, ...] = ()  # written by this payment: report them after commit


@dataclass(frozen=True, slots=True)
class WebhookResult:
    handled: bool  # False for events the provider ignores
    checkout: CheckoutSession | None = None  # the session the event completed, if any


class PaymentProvider(Protocol):
    name: str

    async def create_checkout(self, session: AsyncSession, account_id: int, plan_id: int) -> CheckoutSession:
        """Start paying for ``plan_id`` (raises ``PaymentRequired`` when it cannot be paid)."""
        ...

    async def handle_webhook(
        self, session: AsyncSession, headers: Mapping[str, str], body: bytes
    ) -> WebhookResult:
        """Verify and apply a provider notification (e.g. a completed payment)."""
        ...


class CreditsOnlyProvider:
    """Pays plans from the account balance, immediately; no webhooks."""

    name = "credits"

    async def create_checkout(self, session: AsyncSession, account_id: int, plan_id: int) -> CheckoutSession:
        account = await repository.lock_account(session, account_id)  # no concurrent double spend
        if account is None:
            raise NotFound(f"No account with id {account_id}.")
        plan = await get_plan(session, plan_id)
        if plan.archived_at is not None:
            raise InvalidRequest(f"Plan {plan.name!r} is no longer offered; choose another plan.")
        price = usd_to_nanos(plan.price_usd, "price_usd")
        if account.balance_nanos < price:
            raise PaymentRequired(
                f"Plan {plan.name!r} costs ${format_usd(price)} per {plan.period}; the balance is "
                f"${format_usd(account.balance_nanos)}. Top up or redeem a code, then try again.",
                code="insufficient_balance",
            )
        entries: list[CreditEntry] = []
        if price > 0:
            entries.append(
                await credit.add_credit(session, account_id, -price, "purchase", f"plan:{plan.id}")
            )
        subscribed = await subscriptions.subscribe(session, account_id, plan.id)
        if subscribed.grant is not None:
            entries.append(subscribed.grant)
        return CheckoutSession(
            id=f"credits_{subscribed.subscription.id}",
            provider=self.name,
            account_id=account_id,
            plan_id=plan.id,
            amount_nanos=price,
            status="paid",
            subscription_id=subscribed.subscription.id,
            credit_entries=tuple(entries),
        )

    async def handle_webhook(
        self, session: AsyncSession, headers: Mapping[str, str], body: bytes
    ) -> WebhookResult:
        raise Unsupported("The credits-only payment provider pays at checkout and receives no webhooks.")
