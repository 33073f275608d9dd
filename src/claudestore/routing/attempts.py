"""Which deployment the next upstream attempt of one request goes to, and after what wait.

Everything happens before the first byte reaches the client (after it, nothing is
retried). A request walks a chain of levels: the requested model, then its ``fallbacks``
in order. Within a level, each attempt goes to

1. a selectable deployment (not cooling down, within its own RPM/TPM) that has not failed
   for this request yet, at once (``deployments.choose`` picks among several); else
2. a selectable one that failed before, after an exponential backoff with jitter
   (``backoff_base * 2**n``, at least the upstream's ``retry-after``; a retry-after above
   ``max_retry_wait`` is not waited out), while the level has attempts left
   (``max_attempts`` per level); else
3. the next level (a fallback model), at once.

When no deployment of any remaining level is selectable because all are cooling down,
the last level's deployment whose cooldown ends first is used anyway (after its
retry-after when that is short enough): a breaker steers traffic, it does not refuse it.
Deployments over their own RPM/TPM are never forced; when nothing else is left the request
gets 529 ``overloaded_error``. No new attempt starts once ``budget_seconds`` have passed
since the request started. Only failures the client did not cause are retried:
connection errors, timeouts, 408, 409, 429 and 5xx (``retryable``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from claudestore.config import RoutingConfig
from claudestore.core.errors import GatewayError, Overloaded
from claudestore.routing.deployments import Deployment, choose
from claudestore.routing.router import Route

StepKind = Literal["first", "retry", "next_deployment", "fallback"]

_RNG = random.Random()  # one per process: seeding a Random costs ~35 us


def retryable(err: GatewayError) -> bool:
    """A failure the client did not cause: another attempt may succeed."""
    return err.status in (408, 409, 429) or err.status >= 500


@dataclass(slots=True)
class Step:
    route: Route
    deployment: Deployment
    wait: float  # seconds to sleep before the attempt
    kind: StepKind


class AttemptPlan:
    __slots__ = (
        "_clock",
        "_last_level",
        "_rng",
        "_usable",
        "attempts",
        "cfg",
        "chain",
        "level",
        "level_attempts",
        "started",
        "tried",
    )

    def __init__(
        self,
        chain: list[Route],
        cfg: RoutingConfig,
        usable: Callable[[Deployment], bool] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.chain = chain
        self.cfg = cfg
        self._usable = usable
        self._clock = clock
        self._rng = rng or _RNG
        self.started = clock()
        self.level = 0
        self.level_attempts = 0
        self.attempts = 0
        self.tried: set[Deployment] = set()
        if usable is None:  # every deployment can take the request (the usual case)
            self._last_level = len(chain) - 1
        else:
            levels = [i for i, r in enumerate(chain) if any(usable(d) for d in r.deployments)]
            self._last_level = levels[-1] if levels else -1

    @property
    def servable(self) -> bool:
        """Some deployment in the chain can take this request at all (format permitting)."""
        return self._last_level >= 0

    def next(self, failed: Deployment | None = None, err: GatewayError | None = None) -> Step | None:
        """The next attempt, or None when the request has run out of options or budget.

        Raises ``Overloaded`` when the only deployments left are over their own RPM/TPM."""
        now = self._clock()
        if failed is None and self.attempts == 0 and len(self.chain[0].deployments) == 1:
            only = self.chain[0].deployments[0]  # fast path: one deployment, first attempt
            if only.selectable(now) and (self._usable is None or self._usable(only)):
                self.level_attempts = self.attempts = 1
                return Step(self.chain[0], only, 0.0, "first")
        elapsed = now - self.started
        if failed is not None:
            self.tried.add(failed)
            if elapsed >= self.cfg.budget_seconds:
                return None
        start_level = self.level
        at_capacity: list[Deployment] = []
        while self.level < len(self.chain):
            route = self.chain[self.level]
            usable = self._usable
            deps = list(route.deployments) if usable is None else [d for d in route.deployments if usable(d)]
            if deps and self.level_attempts < self.cfg.max_attempts:
                step = self._within_level(route, deps, now, elapsed, failed, err, at_capacity)
                if step is not None:
                    if self.level != start_level:
                        step.kind = "fallback"
                    self.level_attempts += 1
                    self.attempts += 1
                    return step
            self.level += 1
            self.level_attempts = 0
        if at_capacity and failed is None:
            wait = min(d.window.frees_in(now) for d in at_capacity if d.window is not None)
            raise Overloaded(
                "Every deployment of this model is at its configured request or token rate; retry shortly.",
                retry_after=wait,
            )
        return None

    def _within_level(
        self,
        route: Route,
        deps: list[Deployment],
        now: float,
        elapsed: float,
        failed: Deployment | None,
        err: GatewayError | None,
        at_capacity: list[Deployment],
    ) -> Step | None:
        cfg = self.cfg
        selectable = [d for d in deps if d.selectable(now)]
        fresh = [d for d in selectable if d not in self.tried]
        if fresh:
            pick = choose(fresh, self._rng)
            kind: StepKind = "first" if failed is None else "next_deployment"
            return Step(route, pick, 0.0, kind)
        if selectable:
            wait = self._backoff()
            pick = choose(selectable, self._rng)
            retry_after = err.retry_after if err is not None and pick is failed else None
            if retry_after is not None and retry_after > cfg.max_retry_wait:
                others = [d for d in selectable if d is not failed]
                if not others:
                    return None  # not waited out here: the client gets the error and its retry-after
                pick, retry_after = choose(others, self._rng), None
            if retry_after is not None:
                wait = max(wait, retry_after)
            if elapsed + wait > cfg.budget_seconds:
                return None
            return Step(route, pick, wait, "retry" if pick is failed else "next_deployment")
        cooling = [d for d in deps if d.has_capacity(now)]
        at_capacity.extend(d for d in deps if not d.has_capacity(now))
        if not cooling or self.level != self._last_level:
            return None
        # Everything left is cooling down: use the one that recovers first rather than refuse.
        pick = min(cooling, key=lambda d: d.health.cooldown_until or now)
        wait = 0.0
        if failed is not None:
            remaining = max(0.0, (pick.health.cooldown_until or now) - now)
            if remaining > cfg.max_retry_wait:
                return None
            wait = max(self._backoff(), remaining)
            if elapsed + wait > cfg.budget_seconds:
                return None
        forced: StepKind = "first" if failed is None else ("retry" if pick is failed else "next_deployment")
        return Step(route, pick, wait, forced)

    def _backoff(self) -> float:
        n = max(0, self.level_attempts - 1)
        base = min(self.cfg.backoff_max, self.cfg.backoff_base * (2**n))
        return base * (0.5 + self._rng.random() / 2)
