"""The embedded model's guard against ggml's AMX kernels on CPUs that advertise AMX (providers/local.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claudestore.providers import local


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert local.cpu_has_amx(str(amx))
    assert not local.cpu_has_amx(str(plain))
    assert not local.cpu_has_amx(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("forced", "amx", "allowed"),
    [("1", True, True), ("0", False, False), (None, True, False), (None, False, True)],
)
def test_extra_buffers_follow_the_cpu_unless_forced(
    monkeypatch: pytest.MonkeyPatch, forced: str | None, amx: bool, allowed: bool
) -> None:
    if forced is None:
        monkeypatch.delenv("CLAUDESTORE_LLAMA_EXTRA_BUFFERS", raising=False)
    else:
        monkeypatch.setenv("CLAUDESTORE_LLAMA_EXTRA_BUFFERS", forced)
    monkeypatch.setattr(local, "cpu_has_amx", lambda: amx)
    assert local.extra_buffers_allowed() is allowed


def test_default_params_turn_extra_buffers_off() -> None:
    class Params:
        use_extra_bufts = True

    class FakeLlamaCpp:
        @staticmethod
        def llama_model_default_params() -> Params:
            return Params()

    local._without_extra_buffers(FakeLlamaCpp)
    local._without_extra_buffers(FakeLlamaCpp)  # idempotent: wrapped once
    assert FakeLlamaCpp.llama_model_default_params().use_extra_bufts is False
