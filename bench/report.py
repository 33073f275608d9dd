"""Render the results of ``run.py`` as Markdown (bench/RESULTS.md): the header and the
targets table here, every other section in report_sections.py. Definitions: README.md."""

from __future__ import annotations

from typing import Any

import report_sections as sections
from report_format import (
    TARGET_ACCOUNTING_COST,
    TARGET_ADDED_P50_MS,
    TARGET_ADDED_P99_MS,
    TARGET_LITELLM_RATIO,
    TARGET_PASS_EVENTS,
    TARGET_RSS_IDLE_MB,
    TARGET_RSS_STREAMS_MB,
    TARGET_TRANSLATED_EVENTS,
    _accounting_costs,
    _busy_warning,
    _defaults_note,
    _noise,
    _status,
    lat,
    ms,
    table,
)


def render(r: dict[str, Any]) -> str:
    meta, targets = r["meta"], r["targets"]
    m = meta["machine"]
    lines = [
        "# ClaudeStore benchmark results",
        "",
        f"- **Command**: `{meta['command']}` ({meta['mode']} run, {meta['duration_s']:g} s per measurement, "
        f"{meta['elapsed_s']} s in all)",
        f"- **Date**: {meta['date']}",
        f"- **Commit**: `{meta['commit']}`",
        f"- **Machine**: {m['nproc']} CPUs ({m['usable_cpus']} usable), {m['cpu_model']}, {m['ram_gb']} GB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- **Layout**: {meta['layout']}" + (f"; {meta['services']}" if meta.get("services") else ""),
        f"- **Load generator**: {meta['loadgen']} for saturation and one-connection latency; "
        "bench/loadgen.py (aiohttp + uvloop) for fixed-rate latency, stream TTFB and held streams",
        f"- **Gateway**: {meta['workers']} worker process(es), "
        f"{'PostgreSQL + Redis' if meta['accounting'] == 'postgres-redis' else 'SQLite'}, keys checked (cached); "
        f"`--accounting {meta['accounting']}`" + _defaults_note(meta.get("config_sections", [])),
        f"- **Load average** at start {meta['loadavg_start']}, at end {meta.get('loadavg_end', '?')}",
        "",
        *_busy_warning(meta),
        "Definitions and method: bench/README.md. Every gateway figure has its baseline: the request the "
        "gateway sends upstream, made directly to the same fake upstream in the same run.",
        "",
    ]
    scen = r["scenarios"]

    # -- targets --------------------------------------------------------------------------------
    lines += ["## Issue 7 targets", ""]
    rows: list[list[str]] = []
    head_s = next((s for s in scen if s["key"] == "messages:claude-test:json"), None)
    json_s = [s for s in scen if not s["stream"]]
    if json_s:
        worst50 = max(
            ((lat(g, "one_conn", "p50") or 0) - (lat(b, "one_conn", "p50") or 0), s["name"])
            for s in json_s
            for b, g in [sections.baseline_and_gateway(targets, s)]
        )
        worst99 = max(
            ((lat(g, "one_conn", "p99") or 0) - (lat(b, "one_conn", "p99") or 0), s["name"])
            for s in json_s
            for b, g in [sections.baseline_and_gateway(targets, s)]
        )
        if head_s:
            b, g = sections.baseline_and_gateway(targets, head_s)
            a50 = (lat(g, "one_conn", "p50") or 0) - (lat(b, "one_conn", "p50") or 0)
            a99 = (lat(g, "one_conn", "p99") or 0) - (lat(b, "one_conn", "p99") or 0)
            rows.append(
                [
                    "added latency p50, non-stream pass-through, 1 connection",
                    f"≤ {TARGET_ADDED_P50_MS} ms",
                    f"{ms(a50)} ms" + _noise(a50),
                    _status(a50 <= TARGET_ADDED_P50_MS) if a50 >= 0 else "n/a",
                ]
            )
            rows.append(
                [
                    "added latency p99, non-stream pass-through, 1 connection",
                    f"≤ {TARGET_ADDED_P99_MS} ms",
                    f"{ms(a99)} ms" + _noise(a99),
                    _status(a99 <= TARGET_ADDED_P99_MS) if a99 >= 0 else "n/a",
                ]
            )
        rows.append(
            [
                "added latency p50, worst non-stream scenario",
                f"≤ {TARGET_ADDED_P50_MS} ms",
                f"{ms(worst50[0])} ms ({worst50[1]})",
                _status(worst50[0] <= TARGET_ADDED_P50_MS),
            ]
        )
        rows.append(
            [
                "added latency p99, worst non-stream scenario",
                f"≤ {TARGET_ADDED_P99_MS} ms",
                f"{ms(worst99[0])} ms ({worst99[1]})",
                _status(worst99[0] <= TARGET_ADDED_P99_MS),
            ]
        )
    lit = r.get("litellm") or {}
    for stream, what in ((False, "non-streaming"), (True, "streaming")):
        key = f"messages:claude-test:{'stream' if stream else 'json'}"
        ours = targets.get(key, {}).get("saturation", {}).get("rps")
        theirs = (lit.get("targets", {}).get(key) or {}).get("saturation", {}).get("rps")
        val = f"{ours / theirs:.1f}x" if ours and theirs else "not measured (run with --litellm)"
        if ours and not theirs and lit:
            val = "LiteLLM not measured: " + (lit.get("error") or "see below")[:80]
        ok = (ours / theirs >= TARGET_LITELLM_RATIO) if ours and theirs else None
        rows.append(
            [
                f"req/s vs LiteLLM, {what} /v1/messages, 1 worker",
                f"≥ {TARGET_LITELLM_RATIO:g}x",
                val,
                _status(ok),
            ]
        )
    workers = meta["workers"]
    for translated, goal in ((False, TARGET_PASS_EVENTS), (True, TARGET_TRANSLATED_EVENTS)):
        got = [
            v
            for k, v in r.get("long", {}).items()
            if not k.startswith("direct") and v.get("translated") is translated
        ]
        if got:
            low = min(got, key=lambda v: v["events_per_s"])
            per = low["events_per_s"] / workers
            rows.append(
                [
                    f"SSE events/s per worker, {'translated' if translated else 'pass-through'} (slowest)",
                    f"≥ {goal:,}",
                    f"{per:,.0f} ({low['name']})",
                    _status(per >= goal),
                ]
            )
        else:
            rows.append(
                [
                    f"SSE events/s per worker, {'translated' if translated else 'pass-through'}",
                    f"≥ {goal:,}",
                    "not measured",
                    "n/a",
                ]
            )
    mem = r.get("memory", {})
    idle = mem.get("gateway_start")
    if idle:
        rows.append(
            [
                "RSS per worker at idle",
                f"< {TARGET_RSS_IDLE_MB} MB",
                f"{idle['max_worker']:.0f} MB",
                _status(idle["max_worker"] < TARGET_RSS_IDLE_MB),
            ]
        )
    hold = mem.get("hold")
    if hold:
        rows.append(
            [
                f"RSS with {hold['requested']:,} open streams (all workers)",
                f"< {TARGET_RSS_STREAMS_MB} MB",
                f"{hold['rss']['total']:.0f} MB ({hold['open']:,} open)",
                _status(hold["rss"]["total"] < TARGET_RSS_STREAMS_MB and hold["open"] >= hold["requested"]),
            ]
        )
    acc = r.get("accounting") or {}
    costs = _accounting_costs(targets, acc)
    if costs:
        worst = max(costs, key=lambda c: c[1])
        cpu_costs = [
            (key, t["paired"]["cpu_cost"]["median"])
            for key, t in acc["targets"].items()
            if (t.get("paired") or {}).get("cpu_cost")
        ]
        cpu_note = ""
        if cpu_costs:
            cpu_worst = max(cpu_costs, key=lambda c: c[1])
            cpu_note = f"; CPU-implied {cpu_worst[1] * 100:.0f}% at worst ({cpu_worst[0]})"
        rows.append(
            [
                f"throughput cost of limits + pricing (customer key vs operator key, {acc['mode']}; "
                "median of alternated rounds)",
                "≤ 15%",
                f"{worst[1] * 100:.0f}% at worst ({worst[0]}){cpu_note}",
                _status(worst[1] <= TARGET_ACCOUNTING_COST),
            ]
        )
    else:
        rows.append(
            [
                "throughput cost of keys + limits + metering",
                "≤ 15%",
                "not measured (run with `--accounting sqlite` or `postgres-redis`)",
                "n/a",
            ]
        )
    lines += table(["target", "goal", "measured", "status"], rows)

    for section in (
        sections.added_latency,
        sections.throughput,
        sections.fixed_rate,
        sections.ttft,
        sections.long_streams,
        sections.memory,
        sections.litellm,
        sections.accounting,
    ):
        lines += section(r)
    return "\n".join(lines)
