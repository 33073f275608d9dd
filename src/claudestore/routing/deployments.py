"""Deployments: the ways one public model is served, and the choice among them.

A deployment is an upstream (a provider: one account, one base URL) plus the model id
that upstream knows, with a weight, a priority and optional own request / token limits
per minute. ``choose`` picks among the selectable ones: the lowest ``priority`` value
first; within it the least loaded (in-flight requests ÷ weight), and among equally loaded
ones at random in proportion to ``weight``. With no request in flight anywhere (the usual
case at low concurrency) that is plain weighted random; under load it keeps the number of
open streams proportional to the weights.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from claudestore.config import DeploymentConfig
from claudestore.routing.health import Health

if TYPE_CHECKING:
    from claudestore.providers.base import Provider

__all__ = ["Deployment", "RateWindow", "choose"]

_WINDOW = 60  # seconds


class RateWindow:
    """Requests and tokens of the last minute, in one-second buckets (per process)."""

    __slots__ = ("_requests", "_stamps", "_tokens")

    def __init__(self) -> None:
        self._requests = [0] * _WINDOW
        self._tokens = [0] * _WINDOW
        self._stamps = [-1] * _WINDOW

    def _slot(self, now: float) -> int:
        second = int(now)
        i = second % _WINDOW
        if self._stamps[i] != second:
            self._stamps[i], self._requests[i], self._tokens[i] = second, 0, 0
        return i

    def add(self, now: float, requests: int = 0, tokens: int = 0) -> None:
        i = self._slot(now)
        self._requests[i] += requests
        self._tokens[i] += tokens

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now) - _WINDOW
        requests = tokens = 0
        for stamp, r, t in zip(self._stamps, self._requests, self._tokens, strict=True):
            if stamp > oldest:
                requests += r
                tokens += t
        return requests, tokens

    def frees_in(self, now: float) -> float:
        """Seconds until the oldest bucket with traffic leaves the window."""
        live = [s for s in self._stamps if s > int(now) - _WINDOW]
        return max(1.0, (min(live) + _WINDOW - now) if live else 1.0)


class Deployment:
    __slots__ = (
        "format",
        "health",
        "in_flight",
        "key",
        "model",
        "name",
        "priority",
        "provider",
        "rpm",
        "tpm",
        "upstream_model",
        "weight",
        "window",
    )

    def __init__(self, model: str, config: DeploymentConfig, provider: Provider) -> None:
        self.model = model  # the public model id it serves
        self.provider = provider
        self.format = provider.format
        self.upstream_model = config.upstream_model or model
        self.name = config.name or f"{provider.name}/{self.upstream_model}"
        self.key = f"{model}:{self.name}"
        self.weight = config.weight
        self.priority = config.priority
        self.rpm = config.rpm
        self.tpm = config.tpm
        self.in_flight = 0
        self.health = Health()
        self.window = RateWindow() if (config.rpm or config.tpm) else None

    def __repr__(self) -> str:
        return f"Deployment({self.key!r})"

    def has_capacity(self, now: float) -> bool:
        if self.window is None:
            return True
        requests, tokens = self.window.totals(now)
        return (self.rpm is None or requests < self.rpm) and (self.tpm is None or tokens < self.tpm)

    def selectable(self, now: float) -> bool:
        return self.health.available(now) and self.has_capacity(now)

    def started(self, now: float) -> None:
        self.in_flight += 1
        self.health.begin(now)
        if self.window is not None:
            self.window.add(now, requests=1)

    def finished(self, now: float, tokens: int) -> None:
        self.in_flight -= 1
        if self.window is not None and tokens:
            self.window.add(now, tokens=tokens)

    def snapshot(self, now: float) -> dict[str, Any]:
        h = self.health
        state = h.state(now)
        out: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "upstream": self.provider.name,
            "upstream_model": self.upstream_model,
            "format": self.format,
            "priority": self.priority,
            "weight": self.weight,
            "state": state,
            "in_flight": self.in_flight,
            "consecutive_failures": h.failures,
            "cooldowns": h.cooldowns,
            "cooldown_remaining_s": round(h.cooldown_until - now, 3) if state == "cooldown" else 0.0,
            "probe_in_flight": h.probing,
            "last_error": h.last_error,
            "last_error_age_s": None if h.last_error_at is None else round(now - h.last_error_at, 3),
        }
        if self.window is not None:
            requests, tokens = self.window.totals(now)
            out["rpm"] = {"limit": self.rpm, "used": requests}
            out["tpm"] = {"limit": self.tpm, "used": tokens}
        return out


def choose(candidates: list[Deployment], rng: random.Random | None = None) -> Deployment:
    """Lowest priority value, then least in-flight per weight, then weighted random."""
    if len(candidates) == 1:
        return candidates[0]
    top = min(d.priority for d in candidates)
    group = [d for d in candidates if d.priority == top]
    if len(group) > 1:
        least = min(d.in_flight / d.weight for d in group)
        group = [d for d in group if d.in_flight / d.weight <= least + 1e-9]
    if len(group) == 1:
        return group[0]
    pick = (rng or random).random() * sum(d.weight for d in group)
    for d in group:
        pick -= d.weight
        if pick < 0:
            return d
    return group[-1]
