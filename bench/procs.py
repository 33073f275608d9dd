"""Processes under test: start the fake upstream, the gateway and LiteLLM's proxy, pin them
to CPUs, and read their CPU time and resident memory from ``/proc``.

Every server is a separate process started the way an operator starts it (the
``claudestore`` CLI, ``litellm``), so what is measured is the whole process tree: the
gateway with ``--workers N`` is uvicorn's supervisor plus N worker processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLI = [sys.executable, "-m", "claudestore.cli.main"]
UPSTREAM_KEY = "bench-upstream-key-0123456789"
KEY_PATTERN = re.compile(r"sk-cs-[A-Za-z0-9_-]{20,}")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (inherited by children)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- CPU layout ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which CPUs each role may run on; empty = not pinned (the whole machine)."""

    gateway: tuple[int, ...]
    upstream: tuple[int, ...]
    loadgen: tuple[int, ...]
    note: str

    def describe(self) -> str:
        def show(cpus: tuple[int, ...]) -> str:
            return ",".join(map(str, cpus)) if cpus else "any"

        return (
            f"gateway/LiteLLM on CPU {show(self.gateway)}, fake upstream on CPU {show(self.upstream)}, "
            f"load generator on CPU {show(self.loadgen)} ({self.note})"
        )


def plan_layout(workers: int, mode: str = "auto") -> Layout:
    """Pin the server under test away from the fake upstream and the load generator.

    * ``nproc >= workers + 2``: the gateway's workers get ``workers`` CPUs of their own,
      the fake upstream one, the load generator the rest.
    * ``nproc > workers`` (e.g. 2 CPUs, 1 worker): the gateway gets its own CPU(s), the fake
      upstream and the load generator share the rest.
    * otherwise (or ``mode == "none"``): nothing is pinned.
    """
    cpus = sorted(os.sched_getaffinity(0))
    n = len(cpus)
    if mode == "none" or n < 2 or workers >= n:
        why = "pinning off" if mode == "none" else f"{n} CPUs for {workers} worker(s): nothing pinned"
        return Layout((), (), (), why)
    gw = tuple(cpus[:workers])
    rest = cpus[workers:]
    if len(rest) >= 2:
        return Layout(gw, (rest[0],), tuple(rest[1:]), "each role on its own CPUs")
    return Layout(gw, tuple(rest), tuple(rest), "fake upstream and load generator share a CPU")


def pin_prefix(cpus: tuple[int, ...]) -> list[str]:
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", ",".join(map(str, cpus))]
    return []


def pin(pid: int, cpus: tuple[int, ...]) -> None:
    if cpus:
        os.sched_setaffinity(pid, cpus)


# -- /proc accounting ------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces; everything after the last ')' is fixed.
    return raw[raw.rfind(")") + 2 :].split()


def parent_of(pid: int) -> int:
    fields = _stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(f"no process {pid}")
    return int(fields[1])


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (not of their dead children), in seconds."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of /proc/<pid>/stat
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages divided among the processes that share them, so
    the PSS of a process tree adds up to what it really holds (RSS counts shared pages twice)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0.0


# -- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    """A server process tree; ``workers()`` are the processes that serve requests."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    key: str = ""
    ready_path: str = "/healthz"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until it answers HTTP; stop it and raise if it does not."""
        try:
            wait_http(self.url + self.ready_path, self.proc, self.log, timeout)
        except Exception:
            self.stop()
            raise

    def tree(self) -> list[int]:
        return [self.proc.pid, *children_of(self.proc.pid)]

    def workers(self) -> list[int]:
        """Processes that hold a server loop: the children when there are any (uvicorn's
        multi-process mode, LiteLLM's workers), else the process itself."""
        kids = [p for p in children_of(self.proc.pid) if _is_server(p)]
        return kids or [self.proc.pid]

    def cpu(self) -> float:
        return cpu_seconds(self.tree())

    def rss(self) -> dict[str, float]:
        """Total RSS of the tree, the largest worker's, and the tree's total PSS, in MB."""
        tree = self.tree()
        per = [rss_mb(p) for p in self.workers()]
        return {
            "total": sum(rss_mb(p) for p in tree),
            "max_worker": max(per or [0.0]),
            "workers": len(per),
            "pss_total": sum(pss_mb(p) for p in tree),
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _is_server(pid: int) -> bool:
    """A Python child that is not multiprocessing's helper (resource tracker)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return "python" in os.path.basename(exe) and b"resource_tracker" not in cmdline


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {timeout:g} s (log: {log})")


def _spawn(cmd: list[str], cpus: tuple[int, ...], log: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [*pin_prefix(cpus), *cmd],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: stopped as one tree
    )


def start_fake_upstream(workdir: Path, cpus: tuple[int, ...], *, wait: bool = True) -> Server:
    """Start ``claudestore fake-upstream``; with ``wait=False`` call ``wait_ready()`` later."""
    port = free_port()
    log = workdir / "fake-upstream.log"
    proc = _spawn([*CLI, "fake-upstream", "--port", str(port), "--api-key", UPSTREAM_KEY], cpus, log)
    server = Server("fake-upstream", proc, port, log, ready_path="/_fake/requests?limit=1")
    if wait:
        server.wait_ready()
    return server


def create_key(config_path: Path, env: dict[str, str]) -> str:
    out = subprocess.run(
        [*CLI, "keys", "create", "bench", "--config", str(config_path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    match = KEY_PATTERN.search(out.stdout)
    if not match:
        raise RuntimeError(f"no key in `claudestore keys create` output: {out.stdout!r} {out.stderr!r}")
    return match.group(0)


_CLI_SERVER = r"""
import contextlib, io, json, sys
from claudestore.cli.main import main
for line in sys.stdin:
    args = json.loads(line)
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main.main(args=args, standalone_mode=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=err)
            code = 1
    print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
"""


class CliSession:
    """``claudestore`` commands run one after another in one interpreter (each command in a new
    process pays Python's and SQLAlchemy's start-up, about a second). Use as a context manager;
    calling it runs ``claudestore ARGS --config CONFIG`` and returns its stdout."""

    def __init__(self, config_path: Path, env: dict[str, str]) -> None:
        self.config_path = config_path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CLI_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def __call__(self, *args: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([*args, "--config", str(self.config_path)]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"claudestore {' '.join(args)}: the CLI process exited")
        reply = json.loads(line)
        if reply["code"] != 0:
            raise RuntimeError(
                f"claudestore {' '.join(args)} failed: {(reply['err'] or reply['out']).strip()}"
            )
        return str(reply["out"])

    def __enter__(self) -> CliSession:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def asyncpg_dsn(server_url: str) -> str:
    """``server_url`` (any SQLAlchemy PostgreSQL URL) as a plain DSN for ``asyncpg.connect``."""
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_postgres_database(server_url: str) -> tuple[str, str]:
    """A fresh database ``cs_bench_<hex>`` on the server at ``server_url``; returns
    (its SQLAlchemy asyncpg URL, its name)."""
    import asyncio
    import secrets

    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"cs_bench_{secrets.token_hex(4)}"
    base = make_url(server_url)

    async def create() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = base.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    return url, name


def drop_postgres_database(server_url: str, name: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def flush_redis(url: str) -> None:
    import asyncio

    from claudestore.limits.resp import RespClient  # the gateway's own client: no redis-py needed

    async def flush() -> None:
        client = RespClient(url, timeout=3.0)
        try:
            await client.call("FLUSHDB")
        finally:
            await client.close()

    asyncio.run(flush())


def gateway_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDESTORE_DATABASE_URL")}
    env.setdefault("CLAUDESTORE_KEY_PEPPER", "bench-pepper-not-a-secret")
    return env


def start_gateway(
    workdir: Path, config_path: Path, workers: int, cpus: tuple[int, ...], key: str | None = None
) -> Server:
    """Start ``claudestore serve``; ``key`` is the operator key to use (made here when None)."""
    env = gateway_env()
    key = key or create_key(config_path, env)
    port = free_port()
    log = workdir / "gateway.log"
    cmd = [
        *CLI,
        "serve",
        "--config",
        str(config_path),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    proc = _spawn(cmd, cpus, log, env)
    server = Server("claudestore", proc, port, log, key=key)
    server.wait_ready()
    if workers > 1:  # uvicorn answers as soon as one worker is up
        deadline = time.monotonic() + 60
        while len(server.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
    return server


# -- LiteLLM (its own venv) ------------------------------------------------------------

BENCH_DIR = Path(__file__).resolve().parent
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
LITELLM_KEY = "sk-bench-litellm-master-key"


def ensure_litellm_venv(log: Path) -> Path:
    """Create ``bench/.venv-litellm`` with ``litellm[proxy]`` on first use; return its ``litellm``."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"creating {LITELLM_VENV} and installing litellm[proxy] (first use; log: {log})", flush=True)
    with log.open("ab") as out:
        for cmd in (
            ["python3", "-m", "venv", str(LITELLM_VENV)],
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "-U", "pip"],
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
        ):
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed with {done.returncode}; see {log}")
    if not exe.exists():
        raise RuntimeError(f"litellm[proxy] installed but {exe} is missing; see {log}")
    return exe


def litellm_version() -> str:
    py = LITELLM_VENV / "bin" / "python"
    out = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def start_litellm(workdir: Path, config_path: Path, workers: int, cpus: tuple[int, ...], exe: Path) -> Server:
    port = free_port()
    log = workdir / "litellm.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "LITELLM_"))}
    # No network here but the package registries: use the cost map shipped in the package
    # instead of fetching it at start-up. Everything else is LiteLLM's default.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PATH"] = f"{exe.parent}:{env.get('PATH', '')}"
    cmd = [str(exe), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--num_workers", str(workers)]
    proc = _spawn(cmd, cpus, log, env)
    server = Server("litellm", proc, port, log, key=LITELLM_KEY, ready_path="/health/liveliness")
    server.wait_ready(timeout=180)
    return server
