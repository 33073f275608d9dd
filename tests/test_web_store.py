"""The web store in a real browser: Playwright for Python driving Debian's Chromium, headless.

Walk 1 (a customer): plans page → "Start free" → sign up → create a key → call the API with
that key through the ``anthropic`` SDK → the usage page shows the call and its tokens.
Walk 2 (the operator): console log-in with the admin key → create a plan → it is on the public
plans page. Plus a phone-sized viewport and a keyboard-only log-in.

Screenshots of the key pages go to ``$CLAUDESTORE_SCREENSHOTS`` or, by default,
``test-artifacts/screenshots/<run time>/`` (git-ignored); the path is printed. Without Chromium
or Playwright the tests skip, unless ``CLAUDESTORE_REQUIRE_CLIENTS=1`` (CI) makes it a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import pytest
import pytest_asyncio

from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent


def _unavailable(reason: str) -> None:
    if os.environ.get("CLAUDESTORE_REQUIRE_CLIENTS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - dev extra not installed
    _unavailable("playwright is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(
        os.environ.get("CLAUDESTORE_SCREENSHOTS")
        or ROOT / "test-artifacts" / "screenshots" / datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb store screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream) -> Iterator[Gateway]:
    """A gateway as on a fresh install: SQLite, the starter Free plan seeded at start-up."""
    tmp = tmp_path_factory.mktemp("web-store")
    gw = start_gateway(tmp, fake_upstream, f"sqlite:///{tmp / 'store.db'}", name="store",
                       web={"seed_free_plan": True})
    yield gw
    stop(gw.proc)


def _chromium_present() -> bool:
    return Path(CHROMIUM).exists() and shutil.which("chromium") is not None


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not _chromium_present():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)")
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            await launched.close()


async def _usage_shows(page: Page, url: str, requests: int) -> None:
    """The ledger is written in batches every 50 ms: reload until the call is on the page."""
    deadline = time.monotonic() + 10
    while True:
        await page.goto(url)
        if (await page.locator("#total-requests").inner_text()).strip() == str(requests):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"usage page never showed {requests} request(s)")
        await asyncio.sleep(0.2)


async def test_customer_walk_from_plans_to_first_call(browser: Browser, store: Gateway, shots: Path) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    steps: list[str] = []

    await page.goto(store.url + "/")
    await page.screenshot(path=shots / "01-landing.png", full_page=True)
    started = time.monotonic()
    await page.get_by_role("link", name="View Plans").click()
    steps.append("plans page")
    await expect(page).to_have_url(store.url + "/plans")
    free = page.locator("article[data-plan='Free']")
    await expect(free).to_contain_text("Free")
    await expect(free).to_contain_text("10 requests / min")
    await page.screenshot(path=shots / "02-plans.png", full_page=True)

    await free.get_by_role("link", name="Start free").click()
    steps.append("sign-up form")
    email = f"walker-{time.time_ns()}@example.com"
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill("correct horse battery staple")
    await page.screenshot(path=shots / "03-signup.png", full_page=True)
    await page.get_by_role("button", name="Sign up and start the plan").click()
    steps.append("keys page (plan active)")
    await expect(page).to_have_url(store.url + "/dashboard/keys")
    await expect(page.get_by_text("Keys work once you are on a plan")).to_have_count(0)

    await page.get_by_label("Name").fill("laptop")
    await page.get_by_role("button", name="Create key").click()
    steps.append("new key with snippets")
    key = (await page.locator("#key-value").inner_text()).strip()
    assert key.startswith("sk-cs-"), key
    await expect(page.locator("#curl-snippet")).to_contain_text(f"{store.url}/v1/messages")
    await expect(page.locator("#python-snippet")).to_contain_text(key)
    await page.screenshot(path=shots / "04-key-created.png", full_page=True)

    client = anthropic.AsyncAnthropic(base_url=store.url, api_key=key, max_retries=0)
    message = await client.messages.create(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "Hello from the store"}]
    )
    elapsed = time.monotonic() - started
    steps.append("first API call")
    assert message.content[0].type == "text"
    assert elapsed < 60, f"the automated walk took {elapsed:.1f} s"
    print(f"\nwalk: {len(steps)} screens/steps ({' → '.join(steps)}), automated in {elapsed:.1f} s")

    await _usage_shows(page, store.url + "/dashboard/usage", 1)
    usage = message.usage
    await expect(page.locator("#total-input")).to_have_text(f"{usage.input_tokens:,}")
    await expect(page.locator("#total-output")).to_have_text(f"{usage.output_tokens:,}")
    row = page.locator("#recent-requests tbody tr").first
    await expect(row).to_contain_text("claude-test")
    await expect(row).to_contain_text("200")
    await page.screenshot(path=shots / "05-usage.png", full_page=True)

    await page.goto(store.url + "/dashboard")
    await expect(page.locator("h1")).to_have_text(email)
    await page.screenshot(path=shots / "06-overview.png", full_page=True)

    # Revoking the key from the dashboard stops it at once (this process; others within the TTL).
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(store.url + "/dashboard/keys")
    await page.get_by_role("button", name="Revoke laptop").click()
    await expect(page.locator("tbody tr").first).to_contain_text("revoked")
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert errors == []
    await context.close()


async def test_admin_creates_a_plan_that_appears_on_the_plans_page(
    browser: Browser, store: Gateway, shots: Path
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(store.url + "/console")
    await expect(page).to_have_url(store.url + "/console/login?next=/console")
    await page.get_by_label("Admin key").fill("not-the-key")
    await page.get_by_role("button", name="Open the console").click()
    await expect(page.get_by_role("alert")).to_contain_text("not this server's admin key")
    await page.get_by_label("Admin key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Open the console").click()
    await expect(page).to_have_url(store.url + "/console")
    await page.screenshot(path=shots / "07-console.png", full_page=True)

    await page.goto(store.url + "/console/plans")
    name = f"Team {time.time_ns() % 100000}"
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Description").fill("For small teams")
    await page.get_by_label("Price").fill("20")
    await page.get_by_label("Requests per minute").fill("120")
    await page.get_by_role("button", name="Create plan").click()
    await expect(page.get_by_text(name).first).to_be_visible()
    await page.screenshot(path=shots / "08-console-plans.png", full_page=True)

    anonymous = await browser.new_page()
    await anonymous.goto(store.url + "/plans")
    card = anonymous.locator(f"article[data-plan='{name}']")
    await expect(card).to_contain_text("$20.00")
    await expect(card).to_contain_text("120 requests / min")
    await anonymous.goto(store.url + "/docs/quickstart")
    await expect(anonymous.locator("main")).to_contain_text(f"{store.url}/v1/messages")
    await anonymous.screenshot(path=shots / "11-docs-quickstart.png", full_page=True)
    await anonymous.close()
    await context.close()


async def test_phone_viewport_and_keyboard_login(browser: Browser, store: Gateway, shots: Path) -> None:
    """On a 375 px wide screen nothing scrolls sideways; log-in works with the keyboard alone."""
    context = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = await context.new_page()
    email = f"phone-{time.time_ns()}@example.com"
    await page.goto(store.url + "/signup")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill("another long passphrase")
    await page.get_by_role("button", name="Sign up").click()
    await expect(page).to_have_url(store.url + "/dashboard/plans")
    for path, shot in (("/plans", "09-phone-plans.png"), ("/dashboard/plans", "10-phone-dashboard-plans.png")):
        await page.goto(store.url + path)
        overflow: Any = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
        await page.screenshot(path=shots / shot, full_page=True)
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(store.url + "/")

    await page.goto(store.url + "/login")
    await page.keyboard.type(email)  # the e-mail field has autofocus
    await page.keyboard.press("Tab")
    await page.keyboard.type("another long passphrase")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(store.url + "/dashboard")
    await context.close()
