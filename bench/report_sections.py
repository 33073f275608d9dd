"""The sections of bench/RESULTS.md after the targets table, one function each (report.render","puts them together)."""

from __future__ import annotations

from typing import Any

from report_format import (
    _accounting_costs,
    _cost_range,
    _paired_rps,
    lat,
    ms,
    num,
    ratio,
    table,
)


def baseline_and_gateway(targets: dict[str, Any], s: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A scenario's direct baseline and gateway results."""
    return targets.get(s["baseline"], {}), targets.get(s["key"], {})


def added_latency(r: dict[str, Any]) -> list[str]:
    targets, scen = r["targets"], r["scenarios"]
    lines: list[str] = []
    lines += [
        "## Added latency at one connection",
        "",
        "One connection, requests back to back; gateway minus its direct baseline (ms), and gateway ÷ baseline.",
        "",
    ]
    rows = []
    for s in scen:
        b, g = baseline_and_gateway(targets, s)
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
    return lines


def throughput(r: dict[str, Any]) -> list[str]:
    meta, targets, scen = r["meta"], r["targets"], r["scenarios"]
    lines: list[str] = []
    lines += [
        f"## Throughput at saturation ({meta['connections']} connections)",
        "",
        "Successful responses per second. CPU s / 1k = CPU seconds (user + system, whole process tree) "
        "spent per 1,000 requests; CPU use = CPU seconds per second of wall time (1.0 = one core busy).",
        "",
    ]
    rows = []
    for s in scen:
        b, g = baseline_and_gateway(targets, s)
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
    return lines


def fixed_rate(r: dict[str, Any]) -> list[str]:
    meta, targets, scen = r["meta"], r["targets"], r["scenarios"]
    lines: list[str] = []
    if any("rate" in targets.get(s["key"], {}) for s in scen):
        lines += [
            f"## Latency at a fixed offered load ({meta['rate']:g} req/s)",
            "",
            "Open loop: one request every 1/rate s whatever the answers do; latency of each full response (ms).",
            "",
        ]
        rows = []
        for s in scen:
            b, g = baseline_and_gateway(targets, s)
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
    return lines


def ttft(r: dict[str, Any]) -> list[str]:
    targets, scen = r["targets"], r["scenarios"]
    lines: list[str] = []
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
            b, g = baseline_and_gateway(targets, s)
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
    return lines


def long_streams(r: dict[str, Any]) -> list[str]:
    meta = r["meta"]
    workers = meta["workers"]
    lines: list[str] = []
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
    return lines


def memory(r: dict[str, Any]) -> list[str]:
    mem = r.get("memory", {})
    hold = mem.get("hold")
    lines: list[str] = []
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
    return lines


def litellm(r: dict[str, Any]) -> list[str]:
    meta, targets = r["meta"], r["targets"]
    lit = r.get("litellm") or {}
    mem = r.get("memory", {})
    lines: list[str] = []
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
    return lines


def accounting(r: dict[str, Any]) -> list[str]:
    meta, targets, scen = r["meta"], r["targets"], r["scenarios"]
    acc = r.get("accounting") or {}
    costs = _accounting_costs(targets, acc)
    lines: list[str] = []
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
        return lines
    paired = next((t["paired"] for t in (acc.get("targets") or {}).values() if "paired" in t), {})
    shape = ""
    if paired.get("rounds"):
        n = len(paired["rounds"]["operator"])
        shape = f" ({n} round{'s' if n != 1 else ''} of {paired['duration_s']:g} s per key)"
    lines += [
        f"`--accounting {acc['mode']}`: each scenario again with a customer key (an account on a plan "
        "with rpm, tpm, concurrency and a token quota set far above the load, credit, prices for both "
        "models): limiter admission and settlement, cost reservation against the balance, pricing, and "
        "the ledger row, against the operator key's figures above (key check and ledger row only). "
        "This build has no switch that turns metering off, so the operator key is the baseline. "
        f"req/s and CPU s / 1k are means of saturation runs ({meta['connections']} connections) with the two "
        f"keys alternated in rounds{shape} (operator then customer, customer then operator, and so on) so that "
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
    return lines
