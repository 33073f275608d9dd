"""The API docs (/docs): every page served as HTML with the security headers, filled in with
this server's own address, models and plans, and the examples run as printed.

One gateway process in front of the fake upstream (SQLite), with a public plan and a customer
subscribed to it. The curl commands are cut out of the rendered HTML and run with the real
curl binary and the customer's key in ``$CLAUDESTORE_KEY``, exactly as a reader would paste them.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest

from claudestore.web.app import CSP
from tests.support.servers import ADMIN_KEY, FakeUpstream, Gateway, start_gateway, stop

PAGES = ["quickstart", "streaming", "errors", "rate-limits", "models"]
TITLE = "Docs <Test> & Co"  # must come out escaped
PLAN = "Starter"


@dataclass
class Store:
    gateway: Gateway
    customer_key: str  # on the public plan PLAN
    slow_key: str  # on a private plan of one request a minute

    @property
    def url(self) -> str:
        return self.gateway.url


def admin(store_url: str, method: str, path: str, body: dict) -> dict:
    response = httpx.request(
        method, store_url + path, json=body, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("web-docs")
    gw = start_gateway(
        tmp, fake_upstream, f"sqlite+aiosqlite:///{tmp / 'claudestore.db'}", web={"title": TITLE}
    )
    try:
        admin(
            gw.url,
            "POST",
            "/admin/plans",
            {"name": PLAN, "price_usd": "0", "rpm": 60, "tpm": 100000, "allowed_models": ["claude-*"]},
        )
        account = admin(gw.url, "POST", "/admin/accounts", {"name": "Docs Reader"})
        admin(gw.url, "POST", f"/admin/accounts/{account['id']}/subscription", {"plan": PLAN})
        key = admin(gw.url, "POST", f"/admin/accounts/{account['id']}/keys", {"name": "docs"})["key"]
        # A private plan of one request a minute, for a refusal (kept off the pages: not public).
        admin(gw.url, "POST", "/admin/plans", {"name": "Trickle", "rpm": 1, "public": False})
        slow = admin(gw.url, "POST", "/admin/accounts", {"name": "Slow Reader"})
        admin(gw.url, "POST", f"/admin/accounts/{slow['id']}/subscription", {"plan": "Trickle"})
        slow_key = admin(gw.url, "POST", f"/admin/accounts/{slow['id']}/keys", {"name": "slow"})["key"]
        yield Store(gw, key, slow_key)
    finally:
        stop(gw.proc)


def get(store: Store, path: str, **headers: str) -> httpx.Response:
    return httpx.get(store.url + path, headers=headers, follow_redirects=False)


def pre(page_html: str, block_id: str) -> str:
    """The text of the ``<pre id=block_id>`` as a reader copies it."""
    match = re.search(rf'<pre id="{block_id}"[^>]*><code>(.*?)</code></pre>', page_html, flags=re.S)
    assert match, f"no <pre id={block_id!r}> on the page"
    return html.unescape(match.group(1))


def run_curl(command: str, key: str) -> str:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    env = {**os.environ, "CLAUDESTORE_KEY": key}
    out = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True, env=env
    )
    return out.stdout


def anthropic_events(text: str) -> list[dict]:
    """The events of an Anthropic SSE stream; each must have ``event:`` equal to its data's type."""
    events = []
    for frame in filter(None, text.split("\n\n")):
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :], frame
        events.append(data)
    return events


def shape(events: list[dict]) -> list[str]:
    """Event types without pings, consecutive repeats collapsed (one text delta or many)."""
    out: list[str] = []
    for e in events:
        if e["type"] != "ping" and (not out or out[-1] != e["type"]):
            out.append(e["type"])
    return out


# -- every page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", *(f"/docs/{p}" for p in PAGES)])
def test_page_is_html_with_security_headers(store: Store, path: str) -> None:
    response = get(store, path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    body = response.text
    # The side nav links every page and marks the current one.
    for p in PAGES:
        assert f'<a href="/docs/{p}"' in body
    nav = re.search(r'<nav aria-label="Docs">(.*?)</nav>', body, flags=re.S)
    assert nav
    current = re.findall(r'<a href="([^"]*)" aria-current="page">', nav.group(1))
    assert current == [path], current
    # Escaped: the site title carries markup characters.
    assert "Docs &lt;Test&gt; &amp; Co" in body and TITLE not in body
    # Copy buttons find their block by id: ids are unique.
    ids = re.findall(r'\bid="([^"]+)"', body)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for target in re.findall(r'data-copy="([^"]+)"', body):
        assert target in ids


@pytest.mark.parametrize("path", ["/docs/nope", "/docs/quickstart/more", "/docs/Quickstart"])
def test_unknown_page_is_404_html(store: Store, path: str) -> None:
    response = get(store, path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert "There is no page at this address." in response.text


# -- quick start --------------------------------------------------------------------------------


def test_quickstart_uses_this_servers_address_and_model(store: Store) -> None:
    page = get(store, "/docs/quickstart").text
    messages = pre(page, "curl-messages")
    assert messages.startswith(f"curl {store.url}/v1/messages \\\n")
    assert '"model": "claude-test", "max_tokens": 1024' in messages
    assert '-H "x-api-key: $CLAUDESTORE_KEY"' in messages and "anthropic-version: 2023-06-01" in messages
    stream = pre(page, "curl-stream")
    assert stream.startswith(f"curl -N {store.url}/v1/chat/completions \\\n")
    assert '"model": "claude-test", "stream": true' in stream
    assert f'anthropic.Anthropic(base_url="{store.url}"' in pre(page, "python-anthropic")
    assert f'openai.OpenAI(base_url="{store.url}/v1"' in pre(page, "python-openai")
    assert f'baseURL: "{store.url}"' in pre(page, "js-anthropic")
    assert f'baseURL: "{store.url}/v1"' in pre(page, "js-openai")
    assert f"export ANTHROPIC_BASE_URL={store.url}\n" in pre(page, "claude-code")


def test_quickstart_follows_the_address_the_browser_used(store: Store) -> None:
    page = get(
        store, "/docs/quickstart", **{"x-forwarded-proto": "https", "x-forwarded-host": "api.example.test"}
    )
    assert pre(page.text, "curl-messages").startswith("curl https://api.example.test/v1/messages")
    assert f"curl {store.url}/" not in page.text


def test_quickstart_messages_curl_runs_as_printed(store: Store) -> None:
    command = pre(get(store, "/docs/quickstart").text, "curl-messages")
    body = json.loads(run_curl(command, store.customer_key))
    assert body["type"] == "message" and body["role"] == "assistant", body
    assert body["model"] == "claude-test"
    assert body["content"][0]["type"] == "text" and body["content"][0]["text"]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0


def test_quickstart_streaming_curl_runs_as_printed(store: Store) -> None:
    command = pre(get(store, "/docs/quickstart").text, "curl-stream")
    frames = [f for f in run_curl(command, store.customer_key).split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames), frames
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f[len("data: ") :]) for f in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "claude-test" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # not asked for


# -- streaming ----------------------------------------------------------------------------------


def test_streaming_messages_example_yields_the_documented_events(store: Store) -> None:
    page = get(store, "/docs/streaming").text
    events = anthropic_events(run_curl(pre(page, "curl-messages-stream"), store.customer_key))
    expected = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert shape(events) == expected
    assert events[0]["message"]["model"] == "claude-test"
    assert {e["delta"]["type"] for e in events if e["type"] == "content_block_delta"} == {"text_delta"}
    final = next(e for e in events if e["type"] == "message_delta")
    assert final["delta"]["stop_reason"] == "end_turn" and final["usage"]["output_tokens"] > 0
    # The transcript printed on the page has the same sequence.
    transcript = re.search(
        r"<pre tabindex=\"0\"><code>(event: message_start.*?)</code></pre>", page, flags=re.S
    )
    assert transcript
    assert shape(anthropic_events(html.unescape(transcript.group(1)))) == expected


def test_streaming_chat_example_ends_with_the_usage_chunk(store: Store) -> None:
    command = pre(get(store, "/docs/streaming").text, "curl-chat-stream")
    frames = [f for f in run_curl(command, store.customer_key).split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f[len("data: ") :]) for f in frames[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])


# -- errors, rate limits, models: what the pages say is what the gateway does -------------------


def test_errors_page_examples_match_the_gateways_answers(store: Store) -> None:
    page = get(store, "/docs/errors").text

    def example(block_id: str) -> tuple[int, dict]:
        head, _, body = pre(page, block_id).partition("\n\n")
        return int(head.split()[1]), json.loads(body)

    status, documented = example("example-anthropic")
    wrong_key = httpx.post(
        store.url + "/v1/messages",
        headers={"x-api-key": "sk-cs-wrongwrongwrongwrongwrongwrong", "anthropic-version": "2023-06-01"},
        json={"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert wrong_key.status_code == status == 401
    real = wrong_key.json()
    assert real["error"] == documented["error"]
    assert real.keys() == documented.keys()
    assert real["request_id"] == wrong_key.headers["request-id"] == wrong_key.headers["x-request-id"]

    status, documented = example("example-openai")
    unknown = httpx.post(
        store.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {store.customer_key}"},
        json={"model": "claude-nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unknown.status_code == status == 404
    real = unknown.json()
    assert real.keys() == documented.keys() and real["error"].keys() == documented["error"].keys()
    for field in ("type", "param", "code"):
        assert real["error"][field] == documented["error"][field]
    assert real["error"]["message"].startswith(documented["error"]["message"].split("Available")[0])


def test_rate_limit_headers_on_the_page_are_sent(store: Store) -> None:
    page = get(store, "/docs/rate-limits").text
    names = set(re.findall(r"<code>((?:anthropic-ratelimit|x-ratelimit)-[a-z-]+)</code>", page))
    assert len(names) == 12, names
    body = {"model": "claude-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        store.url + "/v1/messages",
        headers={"x-api-key": store.customer_key, "anthropic-version": "2023-06-01"},
        json=body,
    )
    assert response.status_code == 200, response.text
    sent = {n for n in response.headers if n.startswith(("anthropic-ratelimit-", "x-ratelimit-"))}
    assert sent == {n for n in names if n.startswith("anthropic-")}
    assert response.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert response.headers["anthropic-ratelimit-tokens-limit"] == "100000"
    datetime.strptime(response.headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    openai = httpx.post(
        store.url + "/v1/chat/completions", headers={"authorization": f"Bearer {store.customer_key}"}, json=body
    )
    assert openai.status_code == 200, openai.text
    sent = {n for n in openai.headers if n.startswith(("anthropic-ratelimit-", "x-ratelimit-"))}
    assert sent == {n for n in names if n.startswith("x-")}
    assert openai.headers["x-ratelimit-limit-tokens"] == "100000"
    assert re.fullmatch(r"\d+ms|\d+s|\d+m\d+s", openai.headers["x-ratelimit-reset-requests"])
    # The plan on offer is listed with its limits.
    row = re.search(
        rf"<tr>\s*<th scope=\"row\"><a href=\"/plans#plan-\d+\">{PLAN}</a></th>(.*?)</tr>", page, re.S
    )
    assert row and ">60<" in row.group(1) and ">100,000<" in row.group(1)


def test_a_rate_limit_refusal_is_as_documented(store: Store) -> None:
    page = html.unescape(get(store, "/docs/rate-limits").text)
    documented = re.search(r"HTTP/1.1 429 Too Many Requests\n(.*?)\n\n(\{.*?\})</code>", page, flags=re.S)
    assert documented
    documented_headers = {line.split(":")[0] for line in documented.group(1).splitlines()}
    body = json.loads(documented.group(2))

    def call() -> httpx.Response:
        return httpx.post(
            store.url + "/v1/messages",
            headers={"x-api-key": store.slow_key, "anthropic-version": "2023-06-01"},
            json={"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        )

    assert call().status_code == 200
    refused = call()
    assert refused.status_code == 429
    assert documented_headers <= set(refused.headers)
    assert not any(n.startswith(("anthropic-ratelimit-", "x-ratelimit-")) for n in refused.headers)
    assert int(refused.headers["retry-after-ms"]) == 1000 * int(refused.headers["retry-after"]) > 0
    real = refused.json()
    assert real["error"]["type"] == body["error"]["type"] == "rate_limit_error"
    # The same sentence, with this plan's numbers.
    pattern = re.escape(body["error"]["message"]).replace("60", r"\d+").replace("12", r"\d+")
    assert re.fullmatch(pattern, real["error"]["message"]), real["error"]["message"]


def test_models_page_lists_models_with_their_plans(store: Store) -> None:
    page = get(store, "/docs/models").text
    rows = dict(re.findall(r'<tr id="model-([^"]+)">(.*?)</tr>', page, flags=re.S))
    assert list(rows) == ["claude-test", "claude-budget", "claude-via-openai", "gpt-test"]
    assert "Claude Test (fake upstream)" in rows["claude-test"] and "claude-test-alias" in rows["claude-test"]
    for model in ("claude-test", "claude-budget", "claude-via-openai"):  # the plan allows claude-*
        assert PLAN in rows[model]
    assert PLAN not in rows["gpt-test"]
    # The example answer is what GET /v1/models really returns for its first page.
    example = json.loads(html.unescape(re.search(r"<code>(\{\n.*?)</code>", page, flags=re.S).group(1)))
    real = httpx.get(store.url + "/v1/models?limit=2", headers={"x-api-key": store.customer_key})
    assert real.status_code == 200 and real.json() == example
    assert f"curl {store.url}/v1/models" in pre(page, "curl-models")
