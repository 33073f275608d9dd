"""Render the results of ``run.py`` as Markdown (bench/RESULTS.md). Definitions: README.md."""

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
        f"- **Layout**: {meta['layout']}",
        f"- **Load generator**: {meta['loadgen']} for saturation and one-connection latency; "
        "bench/loadgen.py (aiohttp + uvloop) for fixed-rate latency, stream TTFB and held streams",
        f"- **Gateway**: {meta['workers']} worker process(es), SQLite, keys checked (cached); "
        f"`--accounting {meta['accounting']}`" + _defaults_note(meta.get("config_sections", [])),
        f"- **Load average** at start {meta['loadavg_start']}, at end {meta.get('loadavg_end', '?')}",
        "",
        *_busy_warning(meta),
        "Definitions and method: bench/README.md. Every gateway figure has its baseline: the request the "
        "gateway sends upstream, made directly to the same fake upstream in the same run.",
        "",
    ]
    scen = r["scenarios"]

    def pair(s: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return targets.get(s["baseline"], {}), targets.get(s["key"], {})

    # -- targets --------------------------------------------------------------------------------
    lines += ["## Issue 7 targets", ""]
    rows: list[list[str]] = []
    head_s = next((s for s in scen if s["key"] == "messages:claude-test:json"), None)
    json_s = [s for s in scen if not s["stream"]]
    if json_s:
        worst50 = max(
            ((lat(g, "one_conn", "p50") or 0) - (lat(b, "one_conn", "p50") or 0), s["name"])
            for s in json_s
            for b, g in [pair(s)]
        )
        worst99 = max(
            ((lat(g, "one_conn", "p99") or 0) - (lat(b, "one_conn", "p99") or 0), s["name"])
            for s in json_s
            for b, g in [pair(s)]
        )
        if head_s:
            b, g = pair(head_s)
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

    # -- added latency ------------------------------------------------------------------------------
    lines += [
        "## Added latency at one connection",
        "",
        "One connection, requests back to back; gateway minus its direct baseline (ms), and gateway ÷ baseline.",
        "",
    ]
    rows = []
    for s in scen:
        b, g = pair(s)
        b50, b99 = lat(b, "one_conn", "p50"), lat(b, "one_conn", "p99")
        g50, g99 = lat(g, "one_conn", "p50"), lat(g, "one_conn", "p99")
        rows.append(
            [
                s["name"] + (" stream" if s["stream"] else ""),
                s["baseline_name"],
                f"{ms(b50)} / {ms(b99)}",
                f"{ms(g50)} / {ms(g99)}",
                ms(g50 - b50) if g50 is not None and b50 is not None else "n/a",
                ms(g99 - b99) if g99 is not None and b99 is not None else "n/a",
                ratio(g50, b50),
                ratio(g99, b99),
            ]
        )
    lines += table(
        [
            "scenario",
            "baseline",
            "direct p50 / p99",
            "gateway p50 / p99",
            "added p50",
            "added p99",
            "ratio p50",
            "ratio p99",
        ],
        rows,
    )

    # -- throughput -----------------------------------------------------------------------------------
    lines += [
        f"## Throughput at saturation ({meta['connections']} connections)",
        "",
        "Successful responses per second. CPU s / 1k = CPU seconds (user + system, whole process tree) "
        "spent per 1,000 requests; CPU use = CPU seconds per second of wall time (1.0 = one core busy).",
        "",
    ]
    rows = []
    for s in scen:
        b, g = pair(s)
        bs, gs = b.get("saturation", {}), g.get("saturation", {})
        rows.append(
            [
                s["name"] + (" stream" if s["stream"] else ""),
                num(bs.get("rps")),
                num(gs.get("rps")),
                ratio(gs.get("rps"), bs.get("rps")),
                ms(gs.get("latency_ms", {}).get("p50")),
                ms(gs.get("latency_ms", {}).get("p99")),
                f"{gs.get('cpu_s_per_1k', {}).get('gateway', 0):.3f}",
                f"{gs.get('cpu_util', {}).get('gateway', 0):.2f}",
                f"{bs.get('cpu_s_per_1k', {}).get('upstream', 0):.3f}",
                str(g.get("errors", "n/a")),
            ]
        )
    lines += table(
        [
            "scenario",
            "direct req/s",
            "gateway req/s",
            "gateway ÷ direct",
            "gateway p50 ms",
            "gateway p99 ms",
            "gateway CPU s / 1k",
            "gateway CPU use",
            "fake CPU s / 1k (direct)",
            "errors",
        ],
        rows,
    )

    # -- fixed rate ------------------------------------------------------------------------------------
    if any("rate" in targets.get(s["key"], {}) for s in scen):
        lines += [
            f"## Latency at a fixed offered load ({meta['rate']:g} req/s)",
            "",
            "Open loop: one request every 1/rate s whatever the answers do; latency of each full response (ms).",
            "",
        ]
        rows = []
        for s in scen:
            b, g = pair(s)
            br, gr = b.get("rate", {}), g.get("rate", {})
            bl, gl = br.get("latency_ms", {}), gr.get("latency_ms", {})
            rows.append(
                [
                    s["name"] + (" stream" if s["stream"] else ""),
                    num(gr.get("rps")),
                    " / ".join(ms(bl.get(p)) for p in ("p50", "p90", "p99")),
                    " / ".join(ms(gl.get(p)) for p in ("p50", "p90", "p99")),
                    ms((gl.get("p50") or 0) - (bl.get("p50") or 0)) if gl and bl else "n/a",
                    str(gr.get("errors", "n/a"))
                    + (f" ({gr['dropped']} dropped)" if gr.get("dropped") else ""),
                ]
            )
        lines += table(
            [
                "scenario",
                "achieved req/s",
                "direct p50 / p90 / p99",
                "gateway p50 / p90 / p99",
                "added p50",
                "errors",
            ],
            rows,
        )

    # -- TTFT ------------------------------------------------------------------------------------------
    streams = [s for s in scen if s["stream"]]
    if streams:
        lines += [
            "## Streams: time to first byte (one connection)",
            "",
            "From sending the request to the first body bytes (the first SSE event), and to the last (ms).",
            "",
        ]
        rows = []
        for s in streams:
            b, g = pair(s)
            bt, gt = b.get("ttft", {}), g.get("ttft", {})
            b50, b99 = bt.get("ttfb_ms", {}).get("p50"), bt.get("ttfb_ms", {}).get("p99")
            g50, g99 = gt.get("ttfb_ms", {}).get("p50"), gt.get("ttfb_ms", {}).get("p99")
            rows.append(
                [
                    s["name"],
                    f"{gt.get('events_per_request', 0):.0f}",
                    f"{ms(b50)} / {ms(b99)}",
                    f"{ms(g50)} / {ms(g99)}",
                    ms(g50 - b50) if g50 is not None and b50 is not None else "n/a",
                    ms(g99 - b99) if g99 is not None and b99 is not None else "n/a",
                    ms(gt.get("latency_ms", {}).get("p50")),
                ]
            )
        lines += table(
            [
                "scenario",
                "events / stream",
                "direct TTFB p50 / p99",
                "gateway TTFB p50 / p99",
                "added p50",
                "added p99",
                "gateway full p50",
            ],
            rows,
        )

    # -- long streams --------------------------------------------------------------------------------
    long = r.get("long", {})
    if long:
        lines += [
            "## Long streams: SSE events relayed per second",
            "",
            "8 connections, each stream about 2,000 events written by the fake in one piece; events/s = "
            "streams/s x events per stream. Per worker = gateway events/s ÷ workers. A gateway CPU use "
            "well under 1.0 per worker means something else (the fake, the load generator) was the limit.",
            "",
        ]
        rows = []
        for k, v in long.items():
            if k.startswith("direct"):
                continue
            b = long.get(v["baseline"], {})
            rows.append(
                [
                    v["name"],
                    f"{v['events_per_request']:,}",
                    num(b.get("events_per_s")),
                    num(v["events_per_s"]),
                    num(v["events_per_s"] / workers),
                    f"{v['cpu_util'].get('gateway', 0):.2f}",
                    f"{v['cpu_util'].get('upstream', 0):.2f}",
                    str(v.get("errors", 0)),
                ]
            )
        lines += table(
            [
                "scenario",
                "events / stream",
                "direct events/s",
                "gateway events/s",
                "per worker",
                "gateway CPU use",
                "fake CPU use",
                "errors",
            ],
            rows,
        )

    # -- memory -------------------------------------------------------------------------------------
    if mem:
        lines += [
            "## Memory (RSS)",
            "",
            "RSS of the whole process tree (with workers > 1: uvicorn's supervisor, multiprocessing's "
            "resource tracker and the workers), of the largest single worker, and the tree's PSS "
            "(shared pages counted once).",
            "",
        ]

        def mem_row(label: str, m: dict[str, Any]) -> list[str]:
            pss = m.get("pss_total")
            return [
                label,
                f"{m['total']:.0f}",
                f"{m['max_worker']:.0f}",
                f"{pss:.0f}" if pss else "n/a",
                str(m["workers"]),
            ]

        rows = []
        for label, key in (
            ("gateway after start (idle)", "gateway_start"),
            ("gateway idle after the load", "gateway_idle_after_load"),
        ):
            if key in mem:
                rows.append(mem_row(label, mem[key]))
        if hold:
            label = (
                f"gateway with {hold['open']:,} of {hold['requested']:,} streams open ({hold['scenario']})"
            )
            rows.append(mem_row(label, hold["rss"]))
        if "upstream_start" in mem:
            rows.append(mem_row("fake upstream after start", mem["upstream_start"]))
        lines += table(["state", "RSS total MB", "RSS largest worker MB", "PSS total MB", "workers"], rows)
        served = mem.get("gateway_requests_served")
        if served and "gateway_idle_after_load" in mem and "gateway_start" in mem:
            grown = mem["gateway_idle_after_load"]["total"] - mem["gateway_start"]["total"]
            lines += [
                f"Idle RSS grew by {grown:.0f} MB while the gateway served {served:,} requests "
                f"({grown * 1024 * 1024 / served:,.0f} bytes per request). Growth that keeps pace with "
                "the request count, rather than levelling off, is a leak to look for.",
                "",
            ]
        if hold and (hold.get("failed") or hold["open"] < hold["requested"]):
            lines += [f"Held streams: {hold['open']} opened, failures {hold.get('failed')}.", ""]

    # -- LiteLLM ------------------------------------------------------------------------------------
    if lit:
        lines += ["## LiteLLM side by side", ""]
        if lit.get("error"):
            lines += [f"LiteLLM {lit.get('version', '')} was not measured: {lit['error']}", ""]
        if lit.get("targets"):
            lines += [
                f"LiteLLM {lit.get('version', '?')} proxy from bench/.venv-litellm, default settings plus a "
                "master key, same CPUs, same worker count, same fake upstream, same client requests "
                "(`claude-test` = `anthropic/fake-claude`). LiteLLM's req/s is taken at "
                f"{lit.get('connections', '?')} connections over {lit.get('duration_s', 0):g} s (more "
                "connections only queue in front of it), ClaudeStore's at "
                f"{meta['connections']}. Added p50 = one-connection p50 minus the same direct baseline "
                "as ClaudeStore's. Ratio = ClaudeStore ÷ LiteLLM.",
                "",
            ]
            rows = []
            for key, v in lit["targets"].items():
                ours = targets.get(key, {})
                if v.get("error"):
                    rows.append(
                        [
                            v["name"] + (" stream" if key.endswith("stream") else ""),
                            "n/a",
                            "failed: " + v["error"][:120],
                            "n/a",
                            "n/a",
                            "n/a",
                            "n/a",
                            "n/a",
                        ]
                    )
                    continue
                base = targets.get(v["baseline"], {})
                o_rps = ours.get("saturation", {}).get("rps")
                l_rps = v.get("saturation", {}).get("rps")
                b50 = lat(base, "one_conn", "p50")
                o50, l50 = lat(ours, "one_conn", "p50"), lat(v, "one_conn", "p50")
                rows.append(
                    [
                        v["name"] + (" stream" if key.endswith("stream") else ""),
                        num(o_rps),
                        num(l_rps),
                        ratio(o_rps, l_rps),
                        ms(o50 - b50) if o50 is not None and b50 is not None else "n/a",
                        ms(l50 - b50) if l50 is not None and b50 is not None else "n/a",
                        f"{v.get('saturation', {}).get('cpu_s_per_1k', {}).get('gateway', 0):.2f}",
                        str(v.get("errors", "n/a")),
                    ]
                )
            lines += table(
                [
                    "scenario",
                    "ClaudeStore req/s",
                    "LiteLLM req/s",
                    "ratio",
                    "ClaudeStore added p50 ms",
                    "LiteLLM added p50 ms",
                    "LiteLLM CPU s / 1k",
                    "LiteLLM errors",
                ],
                rows,
            )
            rs, ra = lit.get("rss_start"), lit.get("rss_after_load")
            cs = mem.get("gateway_start")
            if rs and ra:
                lines += table(
                    ["RSS (MB, all processes)", "ClaudeStore", "LiteLLM", "ratio"],
                    [
                        [
                            "after start",
                            f"{cs['total']:.0f}" if cs else "n/a",
                            f"{rs['total']:.0f}",
                            ratio(cs["total"], rs["total"]) if cs else "n/a",
                        ],
                        [
                            "idle after the load",
                            f"{mem.get('gateway_idle_after_load', {}).get('total', 0):.0f}",
                            f"{ra['total']:.0f}",
                            ratio(mem.get("gateway_idle_after_load", {}).get("total"), ra["total"]),
                        ],
                    ],
                )

    lines += [
        "## Keys + limits + metering on",
        "",
    ]
    if not costs:
        lines += [
            "Not measured in this run: `bench/run.py --accounting sqlite` (or `postgres-redis`) adds it. "
            "Every figure above used an operator key: key checked (cached), no plan, so no limiter "
            "admission and no cost reservation; the ledger row (metering) is written all the same.",
            "",
        ]
        return "\n".join(lines)
    lines += [
        f"`--accounting {acc['mode']}`: each scenario again with a customer key (an account on a plan "
        "with rpm, tpm, concurrency and a token quota set far above the load, credit, prices for both "
        "models): limiter admission and settlement, cost reservation against the balance, pricing, and "
        "the ledger row, against the operator key's figures above (key check and ledger row only). "
        "This build has no switch that turns metering off, so the operator key is the baseline. "
        f"req/s and CPU s / 1k are means of saturation runs ({meta['connections']} connections) with the two "
        "keys alternated in rounds (operator then customer, customer then operator, and so on) so that "
        "changes in the machine's background load hit both alike. Throughput cost = 1 - customer req/s ÷ "
        "operator req/s of one round; CPU-implied cost = 1 - operator CPU per request ÷ customer CPU per "
        "request of one round (what the throughput cost is when the gateway's CPU is the bottleneck, "
        "and less moved by the load generator and the fake upstream sharing the other CPU); each the "
        "median over the rounds (lowest .. highest in brackets).",
        "",
    ]
    rows = []
    for s in scen:
        base = targets.get(s["key"], {})
        cust = acc["targets"].get(s["key"], {})
        o_rps, c_rps = _paired_rps(targets, s["key"], cust)
        paired = cust.get("paired") or {}
        o_cpu = paired.get("operator", {}).get("cpu_s_per_1k")
        c_cpu = paired.get("customer", {}).get(
            "cpu_s_per_1k", cust.get("saturation", {}).get("cpu_s_per_1k", {}).get("gateway")
        )
        b = targets.get(s["baseline"], {})
        b50 = lat(b, "one_conn", "p50")
        o50, c50 = lat(base, "one_conn", "p50"), lat(cust, "one_conn", "p50")
        headers = cust.get("probe", {}).get("ratelimit_headers") or {}
        rows.append(
            [
                s["name"] + (" stream" if s["stream"] else ""),
                num(o_rps),
                num(c_rps),
                _cost_range(paired.get("cost"))
                if paired.get("cost")
                else (f"{(1 - c_rps / o_rps) * 100:.0f}%" if o_rps and c_rps else "n/a"),
                _cost_range(paired.get("cpu_cost")),
                ms(o50 - b50) if o50 is not None and b50 is not None else "n/a",
                ms(c50 - b50) if c50 is not None and b50 is not None else "n/a",
                f"{o_cpu:.3f}" if o_cpu is not None else "n/a",
                f"{c_cpu:.3f}" if c_cpu is not None else "n/a",
                "yes" if headers else "**no**",
                str(cust.get("errors", "n/a")),
            ]
        )
    lines += table(
        [
            "scenario",
            "operator key req/s",
            "customer key req/s",
            "throughput cost",
            "CPU-implied cost",
            "operator added p50 ms",
            "customer added p50 ms",
            "operator CPU s / 1k",
            "customer CPU s / 1k",
            "rate-limit headers",
            "errors",
        ],
        rows,
    )
    lines += [
        '"rate-limit headers" = the customer key\'s probe response carried `anthropic-ratelimit-*` / '
        "`x-ratelimit-*` headers, i.e. the limiter admitted it.",
        "",
    ]
    return "\n".join(lines)
