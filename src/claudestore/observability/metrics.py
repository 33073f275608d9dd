"""Prometheus metrics in plain dicts, rendered in the text exposition format at ``GET /metrics``.

Updating a metric on the request path is a dict lookup and an addition (histograms add a
``bisect``); rendering happens only when scraped. Counters are per process: with
``server.workers`` > 1 each scrape sees the worker that answered it (the ``pid`` in
``claudestore_process_info`` says which); scrape workers separately or run one worker per
container when exact totals matter.

Families (label sets in braces):

* ``claudestore_requests_total`` {endpoint, model, upstream, status}
* ``claudestore_tokens_total`` {model, upstream, type: input|output|cache_read|cache_write}
* ``claudestore_cost_usd_total`` {model, upstream}
* ``claudestore_request_duration_seconds`` histogram {endpoint, model, upstream}
* ``claudestore_time_to_first_token_seconds`` histogram {endpoint, model, upstream} (streams)
* ``claudestore_requests_in_flight``, ``claudestore_streams_in_flight``
* ``claudestore_upstream_attempts_total`` {model, upstream, deployment, result}
* ``claudestore_retries_total`` {model, deployment, reason}
* ``claudestore_fallbacks_total`` {model, fallback}
* ``claudestore_cooldowns_total`` {model, deployment}
* ``claudestore_deployment_state`` {model, deployment, upstream, state} (1 for the current state)
* ``claudestore_deployment_in_flight`` {model, deployment, upstream}
* ``claudestore_draining`` (1 after SIGTERM)
* ``claudestore_auth_failures_total``, ``claudestore_auth_throttled_total``,
  ``claudestore_auth_throttle_clients`` (the failed-authentication throttle, when on)
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claudestore.admission.auth_throttle import AuthThrottle
    from claudestore.routing.deployments import Deployment
    from claudestore.server.outcome import Outcome

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[str, ...]


class Histogram:
    __slots__ = ("buckets", "series")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.series: dict[Labels, list[float]] = {}  # labels -> [count per bucket..., +Inf, sum]

    def observe(self, labels: Labels, value: float) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, value)] += 1
        row[-1] += value


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: Iterable[object]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[Labels, int] = {}
        self.tokens: dict[Labels, list[int]] = {}  # (model, upstream) -> 4 token counts and the cost
        self.latency = Histogram(LATENCY_BUCKETS)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.requests_in_flight = 0
        self.streams_in_flight = 0
        self.attempts: dict[Labels, int] = {}
        self.retries: dict[Labels, int] = {}
        self.fallbacks: dict[Labels, int] = {}
        self.cooldowns: dict[Labels, int] = {}
        self.draining = False
        self.auth_throttle: AuthThrottle | None = None  # read when scraped; it keeps its own counts

    # -- the request path -----------------------------------------------------------------

    def observe(self, out: Outcome) -> None:
        """Outcome listener: one finished request."""
        model, upstream = out.model or "", out.upstream or ""
        key = (out.endpoint, model, upstream, str(out.status))
        self.requests[key] = self.requests.get(key, 0) + 1
        u = out.usage
        mkey = (model, upstream)
        row = self.tokens.get(mkey)
        if row is None:
            row = self.tokens[mkey] = [0, 0, 0, 0, 0]  # input, output, cache_read, cache_write, cost
        row[0] += u.input_tokens
        row[1] += u.output_tokens
        row[2] += u.cache_read_tokens
        row[3] += u.cache_write_tokens
        row[4] += out.cost_nanos
        hkey = (out.endpoint, model, upstream)
        if out.finished_at is not None:
            self.latency.observe(hkey, out.finished_at - out.started)
        if out.first_token_at is not None:
            self.ttft.observe(hkey, out.first_token_at - out.started)

    def attempt(self, dep: Deployment, result: str) -> None:
        key = (dep.model, dep.provider.name, dep.name, result)
        self.attempts[key] = self.attempts.get(key, 0) + 1

    def retry(self, model: str, dep: Deployment, reason: str) -> None:
        key = (model, dep.name, reason)
        self.retries[key] = self.retries.get(key, 0) + 1

    def fallback(self, model: str, fallback: str) -> None:
        key = (model, fallback)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def cooldown(self, dep: Deployment) -> None:
        key = (dep.model, dep.name)
        self.cooldowns[key] = self.cooldowns.get(key, 0) + 1

    # -- exposition -----------------------------------------------------------------------

    def render(self, deployments: Iterable[Deployment] = ()) -> bytes:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        def counter(name: str, help_text: str, names: tuple[str, ...], data: dict[Labels, int]) -> None:
            family(name, "counter", help_text)
            for values, n in sorted(data.items()):
                lines.append(f"{name}{{{_labels(names, values)}}} {n}")

        def histogram(name: str, help_text: str, names: tuple[str, ...], h: Histogram) -> None:
            family(name, "histogram", help_text)
            for values, row in sorted(h.series.items()):
                base = _labels(names, values)
                total = 0.0
                for bound, n in zip((*h.buckets, float("inf")), row[:-1], strict=True):
                    total += n
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'{name}_bucket{{{base},le="{le}"}} {int(total)}')
                lines.append(f"{name}_sum{{{base}}} {row[-1]:.6f}")
                lines.append(f"{name}_count{{{base}}} {int(total)}")

        def gauge(name: str, help_text: str, value: float) -> None:
            family(name, "gauge", help_text)
            lines.append(f"{name} {value}")

        family("claudestore_process_info", "gauge", "This gateway process (metrics are per process).")
        lines.append(f'claudestore_process_info{{pid="{os.getpid()}"}} 1')
        gauge("claudestore_process_start_time_seconds", "Start time of this process.", round(self.started, 3))
        counter(
            "claudestore_requests_total",
            "Generation requests by endpoint, public model, upstream and HTTP status.",
            ("endpoint", "model", "upstream", "status"),
            self.requests,
        )
        kinds = ("input", "output", "cache_read", "cache_write")
        tokens = {
            (*key, k): n for key, row in self.tokens.items() for k, n in zip(kinds, row[:4], strict=True) if n
        }
        counter(
            "claudestore_tokens_total",
            "Tokens the upstreams reported, by type.",
            ("model", "upstream", "type"),
            tokens,
        )
        family("claudestore_cost_usd_total", "counter", "Cost charged to customers, USD.")
        for values, row in sorted(self.tokens.items()):
            if row[4]:
                labels = _labels(("model", "upstream"), values)
                lines.append(f"claudestore_cost_usd_total{{{labels}}} {row[4] / 1e9:.9f}")
        histogram(
            "claudestore_request_duration_seconds",
            "Time from request to last byte.",
            ("endpoint", "model", "upstream"),
            self.latency,
        )
        histogram(
            "claudestore_time_to_first_token_seconds",
            "Time from request to the first content delta sent (streams).",
            ("endpoint", "model", "upstream"),
            self.ttft,
        )
        gauge("claudestore_requests_in_flight", "Generation requests being served.", self.requests_in_flight)
        gauge("claudestore_streams_in_flight", "Streams being relayed.", self.streams_in_flight)
        counter(
            "claudestore_upstream_attempts_total",
            "Upstream attempts by result (ok, the error status, timeout, cancelled).",
            ("model", "upstream", "deployment", "result"),
            self.attempts,
        )
        counter(
            "claudestore_retries_total",
            "Attempts after the first of a request, by the failure that caused them.",
            ("model", "deployment", "reason"),
            self.retries,
        )
        counter(
            "claudestore_fallbacks_total",
            "Requests moved to a fallback model.",
            ("model", "fallback"),
            self.fallbacks,
        )
        counter(
            "claudestore_cooldowns_total",
            "Cooldowns entered by deployments.",
            ("model", "deployment"),
            self.cooldowns,
        )
        deps = list(deployments)
        now = time.monotonic()
        family("claudestore_deployment_state", "gauge", "Deployment health: 1 for the current state.")
        names = ("model", "deployment", "upstream", "state")
        for d in deps:
            current = d.health.state(now)
            for state in ("healthy", "cooldown", "half_open"):
                labels = _labels(names, (d.model, d.name, d.provider.name, state))
                lines.append(f"claudestore_deployment_state{{{labels}}} {int(state == current)}")
        family("claudestore_deployment_in_flight", "gauge", "Requests in flight per deployment.")
        for d in deps:
            labels = _labels(("model", "deployment", "upstream"), (d.model, d.name, d.provider.name))
            lines.append(f"claudestore_deployment_in_flight{{{labels}}} {d.in_flight}")
        gauge("claudestore_draining", "1 while the process drains after SIGTERM.", int(self.draining))
        throttle = self.auth_throttle
        if throttle is not None:
            family(
                "claudestore_auth_failures_total",
                "counter",
                "Failed authentications (a credential was sent).",
            )
            lines.append(f"claudestore_auth_failures_total {throttle.failures}")
            family(
                "claudestore_auth_throttled_total",
                "counter",
                "Requests refused with 429 because their address failed authentication too often.",
            )
            lines.append(f"claudestore_auth_throttled_total {throttle.refused}")
            gauge(
                "claudestore_auth_throttle_clients",
                "Client addresses with recent failed authentications (bounded).",
                len(throttle),
            )
        lines.append("")
        return "\n".join(lines).encode()
