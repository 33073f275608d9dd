"""``claudestore``: serve the gateway, run migrations, manage keys, run the fake upstream."""

from __future__ import annotations

import asyncio
import os
import sys

import click

from claudestore.config import ConfigError, load_config

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    envvar="CLAUDESTORE_CONFIG",
    type=click.Path(dir_okay=False),
    help="YAML configuration file (env CLAUDESTORE_CONFIG). Without it, the embedded default.",
)


@click.group()
def main() -> None:
    """ClaudeStore: a self-hostable Claude API gateway."""


def _load(config_path: str | None):  # type: ignore[no-untyped-def]
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


@main.command()
@CONFIG_OPTION
@click.option("--host", default=None, help="Address to bind (default from config: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default from config: 8080).")
@click.option("--workers", type=int, default=None, help="Worker processes sharing the port.")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, with the request id (bodies and keys are never logged).",
)
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    log_level: str,
    log_format: str,
) -> None:
    """Start the gateway. SIGTERM drains: no new connections, running streams get
    ``server.drain_seconds`` to finish and are then ended with an error event."""
    import uvicorn

    from claudestore.storage.migrate import migrate

    config = _load(config_path)
    asyncio.run(migrate(config.database.url))
    if config_path:
        os.environ["CLAUDESTORE_CONFIG"] = os.path.abspath(config_path)
    os.environ["CLAUDESTORE_SKIP_MIGRATIONS"] = "1"
    host = host or config.server.host
    port = port or config.server.port
    workers = workers or config.server.workers
    if not config.models:
        click.echo(
            "warning: no models are configured. Set ANTHROPIC_API_KEY to serve Claude models, "
            "or pass --config with upstreams and models (see README).",
            err=True,
        )
    else:
        click.echo(f"serving {len(config.models)} models on http://{host}:{port}", err=True)
    extra: dict[str, object] = {}
    if log_format == "json":
        from claudestore.observability.logs import log_config

        extra["log_config"] = log_config(log_level)
    uvicorn.run(
        "claudestore.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        server_header=False,  # "server: uvicorn" tells a client nothing it needs (and names the stack)
        lifespan="on",
        log_level=log_level,
        access_log=False,
        h11_max_incomplete_event_size=config.server.max_header_bytes,
        # The gateway ends streams itself at the drain deadline; uvicorn's own limit is a backstop.
        timeout_graceful_shutdown=int(config.server.drain_seconds) + 5,
        **extra,  # type: ignore[arg-type]
    )


@main.command()
@CONFIG_OPTION
def migrate(config_path: str | None) -> None:
    """Upgrade the database schema to the latest version."""
    from claudestore.storage.migrate import migrate as run_migrate

    config = _load(config_path)
    asyncio.run(run_migrate(config.database.url))
    click.echo("database is up to date")


@main.command("fake-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
@click.option("--api-key", default=None, help="Require this key (default: accept any).")
def fake_upstream(host: str, port: int, api_key: str | None) -> None:
    """Run the deterministic fake upstream (both wire formats) for tests and load tests."""
    from claudestore.fake_upstream.server import run

    run(host=host, port=port, api_key=api_key)


def _register_subcommands() -> None:
    from claudestore.cli.accounts import register
    from claudestore.cli.keys import keys

    main.add_command(keys)
    register(main)


_register_subcommands()

if __name__ == "__main__":
    main()
