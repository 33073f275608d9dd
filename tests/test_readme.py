"""The README's configuration example and examples/*.yaml are valid configurations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from claudestore.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_readme_config_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no yaml example"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-example")
    config = parse_config(yaml.safe_load(blocks[0]))
    assert {u.name for u in config.upstreams} == {"anthropic", "vllm"}
    assert config.limits.redis_url is not None


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(path: Path) -> None:
    assert load_config(path).models


def test_readme_shows_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make serve" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
