"""The fixed notices a console page shows after a successful POST redirected to it (``?done=``).

Nothing typed travels in the URL: the query only picks one of these messages.
"""

from __future__ import annotations

from starlette.requests import Request

NOTICES = {
    "account-created": "Account created.",
    "account-saved": "Account details saved.",
    "credited": "The balance was changed and the gateway's live balance told about it.",
    "subscribed": "The account is on the new plan from now on.",
    "cancelled": "The subscription was cancelled; the account's keys stop working until it has a plan again.",
    "disabled": "The account is disabled; its keys stop working within a few seconds.",
    "enabled": "The account is enabled again.",
    "member-added": "Member saved.",
    "key-revoked": "The key is revoked; the gateway refuses it within a few seconds.",
    "plan-created": "Plan created. Public plans are listed on the plans page at once.",
    "plan-saved": "Plan saved. Current subscribers get the changes within a few seconds.",
    "plan-archived": "Plan archived: it takes no new subscriptions and is off the public plans page.",
    "plan-in-use": "The plan is in use by subscriptions or redeem codes, so it was archived instead of deleted.",
    "plan-restored": "Plan restored.",
    "plan-deleted": "Plan deleted.",
    "price-saved": "Price saved; the gateway bills with it within a few seconds.",
    "price-deleted": "Price deleted.",
    "code-deleted": "Code deleted.",
}


def notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("done", ""))
