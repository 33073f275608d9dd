"""The admin console (/console): overview, accounts, plans, prices, redeem codes, upstreams and usage.

Every handler is wrapped by :meth:`Site.admin`. A POST handler reads its form with
:meth:`Site.form` (size, origin, CSRF), turns the text fields into the values the account
services take (the same ones the JSON admin API passes; see :mod:`.forms`), runs the
services in one transaction and commits once. A service error re-renders the page with its
message and status and with what was typed; success redirects (303) to a page showing a
fixed notice picked by ``?done=`` (:mod:`.notices`; nothing typed travels in the URL),
except where something is shown once: new redeem codes and new API keys are in the
response to the POST itself.

- :mod:`.overview`: the overview, upstreams and usage pages;
- :mod:`.accounts`: the accounts list and an account's page with its actions;
- :mod:`.catalog`: plans, model prices and redeem codes.
"""

from __future__ import annotations

from starlette.routing import Route

from claudestore.web.pages.console import accounts, catalog, overview
from claudestore.web.site import Site


def routes(site: Site) -> list[Route]:
    return [*overview.routes(site), *accounts.routes(site), *catalog.routes(site)]
