"""Formatting helpers and the targets of bench/RESULTS.md (report.py renders it)."""

from __future__ import annotations

from typing import Any

# Issue 7's targets on the 2-core machine.
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_LITELLM_RATIO = 25.0
TARGET_PASS_EVENTS = 30_000
TARGET_TRANSLATED_EVENTS = 15_000
TARGET_RSS_IDLE_MB = 150
TARGET_RSS_STREAMS_MB = 300
TARGET_ACCOUNTING_COST = 0.15


def ms(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def num(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def lat(res: dict[str, Any] | None, key: str, p: str) -> float | None:
    if not res or key not in res:
        return None
    return res[key].get("latency_ms", {}).get(p)


def _noise(added: float) -> str:
    """A negative added latency: the baseline's tail was worse than the gateway's, i.e. noise."""
    return " (below the baseline: noise, rerun on a quiet machine)" if added < 0 else ""


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _defaults_note(sections: list[str]) -> str:
    present = [s for s in ("limits", "accounting") if s in sections]
    if not present:
        return " (this build has no limits or metering)"
    return (
        f" (this build has {' and '.join(f'`{s}:`' for s in present)} configuration, left at its defaults; "
        "the main figures use an operator key: no account or plan, so no limiter admission, but a ledger "
        "row per request)"
    )


def _accounting_costs(targets: dict[str, Any], acc: dict[str, Any]) -> list[tuple[str, float]]:
    """(scenario key, 1 - customer req/s / operator req/s) for each scenario measured both ways:
    the median over the alternated rounds when the run has it."""
    out = []
    for key, cust in (acc.get("targets") or {}).items():
        cost = _paired_cost(targets, key, cust)
        if cost is not None:
            out.append((key, cost))
    return out


def _paired_cost(targets: dict[str, Any], key: str, cust: dict[str, Any]) -> float | None:
    median = (cust.get("paired") or {}).get("cost", {}).get("median")
    if median is not None:
        return float(median)
    o_rps, c_rps = _paired_rps(targets, key, cust)
    return 1 - c_rps / o_rps if o_rps and c_rps else None


def _cost_range(spread: dict[str, float] | None) -> str:
    if not spread:
        return "n/a"
    return f"{spread['median'] * 100:.0f}% ({spread['min'] * 100:.0f} .. {spread['max'] * 100:.0f})"


def _paired_rps(targets: dict[str, Any], key: str, cust: dict[str, Any]) -> tuple[float | None, float | None]:
    """Operator and customer req/s: from the alternated runs when there are any."""
    paired = cust.get("paired")
    if paired:
        return paired["operator"]["rps"], paired["customer"]["rps"]
    return targets.get(key, {}).get("saturation", {}).get("rps"), cust.get("saturation", {}).get("rps")


def _busy_warning(meta: dict[str, Any]) -> list[str]:
    """A warning when other work was running: the load average at start, before anything of the
    benchmark ran, above a quarter of the CPUs."""
    try:
        load = float(meta["loadavg_start"].split()[0])
    except (KeyError, ValueError, IndexError):
        return []
    cpus = meta["machine"].get("nproc") or 1
    if load <= cpus / 4:
        return []
    return [
        f"**Warning: the machine was busy** (load average {load:g} on {cpus} CPUs before the run "
        "started): other processes competed for the CPUs, so latencies are inflated and throughputs "
        "deflated. Do not compare these figures with a run on an idle machine.",
        "",
    ]
