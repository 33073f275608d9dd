"""Resolve a public model name (or alias) to the deployments that serve it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from claudestore.config import Config, ModelConfig, is_claude_model
from claudestore.core.errors import NotFound
from claudestore.providers.base import Provider
from claudestore.routing.deployments import Deployment


@dataclass(frozen=True, slots=True)
class Route:
    public_model: str  # the canonical public id (aliases resolved)
    model: ModelConfig
    provider: Provider  # the first deployment's (by priority); count_tokens uses it
    upstream_model: str
    deployments: tuple[Deployment, ...] = ()
    fallbacks: tuple[str, ...] = ()  # public ids of the models tried when every deployment failed


class Router:
    def __init__(self, config: Config, providers: dict[str, Provider]) -> None:
        self.models = config.models
        self._routes: dict[str, Route] = {}
        self.all_deployments: list[Deployment] = []
        for m in config.models:
            deployments = tuple(
                sorted(
                    (Deployment(m.id, d, providers[d.upstream]) for d in m.deployment_list()),
                    key=lambda d: d.priority,
                )
            )
            self.all_deployments.extend(deployments)
            first = deployments[0]
            route = Route(m.id, m, first.provider, first.upstream_model, deployments, tuple(m.fallbacks))
            for name in (m.id, *m.aliases):
                self._routes[name] = route
        self._has_anthropic = any(p.format == "anthropic" for p in providers.values())

    def resolve(self, model: str) -> Route:
        route = self._routes.get(model)
        if route is not None:
            return route
        raise NotFound(self._not_found_message(model), param="model", code="model_not_found")

    def chain(self, route: Route) -> list[Route]:
        """The route, then its fallback models' routes (each once)."""
        if not route.fallbacks:
            return [route]
        out = [route]
        for name in route.fallbacks:
            other = self._routes.get(name)
            if other is not None and all(other is not r for r in out):
                out.append(other)
        return out

    def deployments(self) -> Iterator[Deployment]:
        return iter(self.all_deployments)

    def _not_found_message(self, model: str) -> str:
        shown = repr(model[:200])
        if is_claude_model(model) and not self._has_anthropic:
            return (
                f"No upstream serves the Claude model {shown}. To serve Claude models, set ANTHROPIC_API_KEY "
                "before starting the gateway, or add an upstream of type 'anthropic' and a model entry for it "
                "to the config file (see README, 'Configuration')."
            )
        available = ", ".join(m.id for m in self.models) or "none configured"
        return f"model: {shown} is not available on this gateway. Available models: {available}."
