"""Resolve a public model name (or alias) to the deployment that serves it."""

from __future__ import annotations

from dataclasses import dataclass

from claudestore.config import Config, ModelConfig, is_claude_model
from claudestore.core.errors import NotFound
from claudestore.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Route:
    public_model: str  # the canonical public id (aliases resolved)
    model: ModelConfig
    provider: Provider
    upstream_model: str


class Router:
    def __init__(self, config: Config, providers: dict[str, Provider]) -> None:
        self.models = config.models
        self._routes: dict[str, Route] = {}
        for m in config.models:
            route = Route(m.id, m, providers[m.upstream], m.target)
            for name in (m.id, *m.aliases):
                self._routes[name] = route
        self._has_anthropic = any(p.format == "anthropic" for p in providers.values())

    def resolve(self, model: str) -> Route:
        route = self._routes.get(model)
        if route is not None:
            return route
        raise NotFound(self._not_found_message(model), param="model", code="model_not_found")

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
