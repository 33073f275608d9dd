"""Configuration loading and validation: errors name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from claudestore.config import ConfigError, default_config, load_config, parse_config

BASE = {
    "upstreams": [
        {"name": "a", "type": "anthropic", "api_key_env": "TEST_UPSTREAM_KEY"},
        {
            "name": "o",
            "type": "openai",
            "base_url": "http://127.0.0.1:1/v1",
            "api_key": "${TEST_O_KEY:-dflt}",
        },
    ],
    "models": [
        {"id": "claude-x", "upstream": "a", "aliases": ["claude-x-alias"]},
        {"id": "local-y", "upstream": "o", "upstream_model": "y-7b"},
    ],
}


def test_full_config_parses_and_resolves_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-ant-secret")
    monkeypatch.delenv("TEST_O_KEY", raising=False)
    cfg = parse_config(BASE)
    assert cfg.upstreams[0].resolved_api_key() == "sk-ant-secret"
    assert cfg.upstreams[0].resolved_base_url() == "https://api.anthropic.com"
    assert cfg.upstreams[1].resolved_api_key() == "dflt"
    assert cfg.models[1].target == "y-7b"
    assert cfg.models[0].target == "claude-x"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["upstreams"][1].__setitem__("base_url", 5), "upstreams[1].base_url"),
        (lambda c: c["upstreams"][0].__setitem__("type", "gemini"), "upstreams[0].type"),
        (lambda c: c["upstreams"][0].__setitem__("colour", "red"), "colour"),
        (lambda c: c["models"][0].__setitem__("upstream", "nope"), "models[0].upstream"),
        (lambda c: c["models"][1].__setitem__("aliases", ["claude-x"]), "claude-x"),
        (lambda c: c["upstreams"][1].pop("base_url"), "upstreams[1].base_url"),
        (lambda c: c.__setitem__("server", {"port": "eighty"}), "server.port"),
        (
            lambda c: c.__setitem__("server", {"trusted_proxies": ["10.0.0.0/8", "proxy"]}),
            "trusted_proxies[1]",
        ),
        (lambda c: c.__setitem__("server", {"auth_failures": {"limit": -1}}), "server.auth_failures.limit"),
        (
            lambda c: c.__setitem__("server", {"auth_failures": {"window_seconds": 0}}),
            "server.auth_failures.window_seconds",
        ),
        (
            lambda c: c.__setitem__("server", {"auth_failures": {"max_clients": 0}}),
            "server.auth_failures.max_clients",
        ),
        (lambda c: c.__setitem__("server", {"auth_failures": {"limt": 5}}), "limt"),
        (lambda c: c.__setitem__("server", {"metrics_token": "${UNSET_METRICS_TOKEN_VAR}"}), "metrics_token"),
    ],
)
def test_invalid_config_names_the_key(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    import copy

    cfg = copy.deepcopy(BASE)
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    assert expected in str(info.value)


def test_load_from_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert [m.id for m in load_config(path).models] == ["claude-x", "local-y"]
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    path.write_text("upstreams: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_default_config_serves_claude_only_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr("claudestore.config.local_model_available", lambda: False)
    assert default_config().models == []
    monkeypatch.setattr("claudestore.config.local_model_available", lambda: True)
    local = default_config()
    assert [(u.name, u.type) for u in local.upstreams] == [("local", "local")]
    assert [m.id for m in local.models] == ["gemma-3-270m"]
    assert "not Claude" in (local.models[0].display_name or "")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    cfg = default_config()
    assert cfg.upstreams[0].type == "anthropic"
    assert any(m.id == "claude-sonnet-4-6" and "claude-sonnet-4.6" in m.aliases for m in cfg.models)
    assert cfg.models[-1].id == "gemma-3-270m"


def test_server_security_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed-authentication throttling is on by default; /metrics is open unless a token is set."""
    server = parse_config(BASE).server
    assert (server.auth_failures.limit, server.auth_failures.window_seconds) == (20, 60.0)
    assert server.trusted_proxies == [] and server.metrics_token is None
    monkeypatch.setenv("TEST_METRICS_TOKEN", "m" * 32)
    server = parse_config(
        {
            **BASE,
            "server": {
                "metrics_token": "${TEST_METRICS_TOKEN}",
                "trusted_proxies": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"],
                "auth_failures": {"limit": 0},
            },
        }
    ).server
    assert server.metrics_token == "m" * 32
    assert server.auth_failures.limit == 0  # off
