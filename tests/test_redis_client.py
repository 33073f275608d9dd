"""The limiter's pipelined Redis client (``limits.resp``): against the real Redis server, and
against scripted TCP servers on loopback for what a real one rarely does (stall, hang up,
send garbage)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

import claudestore.limits.redis as redis_module
from claudestore.core.errors import RateLimited
from claudestore.limits.base import Admission, Quota, Scope
from claudestore.limits.redis import RedisLimiter
from claudestore.limits.resp import (
    NoScriptError,
    ReplyError,
    RespClient,
    RespConnectionError,
    Target,
    command_head,
    encode,
    tail,
)
from tests.support.redis import delete_prefix, redis_url, require_redis


@pytest.fixture
async def url() -> str:
    u = redis_url()
    await require_redis(u)
    return u


@contextlib.asynccontextmanager
async def client_on(url: str, **options: Any) -> AsyncIterator[RespClient]:
    client = RespClient(url, **options)
    try:
        yield client
    finally:
        await client.close()


# -- the wire -------------------------------------------------------------------------------


def test_encode_is_an_array_of_bulk_strings() -> None:
    assert (
        encode(("SET", b"k\r\n", 12, "é"))
        == b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_an_encoded_head_plus_the_tail_is_the_whole_command() -> None:
    fixed = ("EVALSHA", "ab" * 20, 2, "cs:log:key:1", "cs:sum:key:1", 60_000_000, "", b"raw")
    own = ("lease-1", "1024", "", "-5")
    assert command_head(fixed, len(own)) + tail(own) == encode((*fixed, *own))
    assert command_head(fixed, 0) + tail(()) == encode(fixed)
    with pytest.raises(UnicodeEncodeError):
        tail(("caf\u00e9",))  # never sent as a wrong length


def test_urls() -> None:
    t = Target.parse("redis://:s%40cret@10.0.0.2:6380/4")
    assert (t.host, t.port, t.db, t.password, t.username, t.tls) == (
        "10.0.0.2",
        6380,
        4,
        "s@cret",
        None,
        False,
    )
    t = Target.parse("rediss://app:pw@cache.example")
    assert (t.host, t.port, t.db, t.username, t.password, t.tls) == (
        "cache.example",
        6379,
        0,
        "app",
        "pw",
        True,
    )
    t = Target.parse("unix:///run/redis.sock?db=3&password=x")
    assert (t.path, t.db, t.password) == ("/run/redis.sock", 3, "x")
    assert Target.parse("redis://127.0.0.1").db == 0
    with pytest.raises(ValueError, match="redis://"):
        Target.parse("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="a number"):
        Target.parse("redis://127.0.0.1/cache")


# -- against Redis --------------------------------------------------------------------------


async def test_replies_match_their_commands_when_many_are_in_flight(url: str) -> None:
    key = f"cs-test-resp-{secrets.token_hex(4)}"
    async with client_on(url) as client:
        try:
            replies = await asyncio.gather(*(client.call("INCR", key) for _ in range(2000)))
            assert replies == list(range(1, 2001))  # one connection, in order
            assert await client.call("SET", key, "v") == b"OK"
            assert await client.call("GET", key) == b"v"
            assert await client.call("GET", key + "-absent") is None
            assert await client.call("MGET", key, key + "-absent") == [b"v", None]
        finally:
            await client.call("DEL", key)


async def test_error_replies_raise_and_the_connection_goes_on(url: str) -> None:
    async with client_on(url) as client:
        with pytest.raises(ReplyError, match="unknown command"):
            await client.call("NO-SUCH-COMMAND")
        with pytest.raises(NoScriptError):
            await client.call("EVALSHA", "0" * 40, 0)
        results = await asyncio.gather(
            client.call("PING"), client.call("INCRBY", "x", "not a number"), client.call("ECHO", "a"),
            return_exceptions=True,
        )  # fmt: skip
        assert results[0] == b"PONG" and isinstance(results[1], ReplyError) and results[2] == b"a"


async def test_the_url_selects_the_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    key = f"cs-test-resp-{secrets.token_hex(4)}"
    async with client_on(f"{base}/14") as client:
        await client.call("SET", key, "in-14", "EX", 60)
    other = aioredis.Redis.from_url(f"{base}/14")
    try:
        assert await other.get(key) == b"in-14"
        await other.delete(key)
    finally:
        await other.aclose()


async def test_send_hands_the_reply_to_its_callback_and_drain_waits_for_it(url: str) -> None:
    key = f"cs-test-resp-{secrets.token_hex(4)}"
    got: list[Any] = []
    async with client_on(url) as client:
        assert not client.send(("PING",), got.append)  # not connected yet: nothing sent
        await client.call("PING")
        assert client.send(("SET", key, "1", "EX", 60), got.append)
        assert client.send(("INCRBY", key, "x"), got.append)
        await client.drain(5.0)
        assert got[0] == b"OK" and isinstance(got[1], ReplyError)
        assert await client.call("GET", key) == b"1"
        await client.call("DEL", key)


async def test_a_lazy_command_goes_with_the_next_one_or_on_its_own_within_moments(url: str) -> None:
    key = f"cs-test-resp-{secrets.token_hex(4)}"
    got: list[Any] = []
    async with client_on(url) as client:
        await client.call("PING")
        assert client.send(("SET", key, "1", "EX", 60), got.append, lazy=True)
        assert got == []
        assert await client.call("INCR", key) == 2  # written after the lazy SET, in one write
        assert got == [b"OK"]
        assert client.send(("INCR", key), got.append, lazy=True)  # alone: written by the timer
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        assert got == [b"OK", 3]
        await client.call("DEL", key)


async def test_an_unreachable_server_fails_fast_with_a_clear_error() -> None:
    async with client_on("redis://127.0.0.1:1/0", timeout=2.0) as client:
        with pytest.raises(RespConnectionError, match="cannot connect to Redis"):
            await client.call("PING")


# -- against scripted servers ---------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on loopback running ``handler`` per connection; yields its redis:// URL."""
    conns: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    count = int((await reader.readline())[1:])
    parts = []
    for _ in range(count):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


async def test_a_stalled_server_times_out_every_command_in_flight_and_the_next_connects_again() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        while True:
            await read_command(reader)
            if not first:  # the first connection never answers
                writer.write(b"+PONG\r\n")

    async with scripted(handler) as url, client_on(url, timeout=0.3) as client:
        results = await asyncio.gather(client.call("PING"), client.call("PING"), return_exceptions=True)
        assert isinstance(results[0], TimeoutError) and "did not answer within 0.3 s" in str(results[0])
        assert isinstance(results[1], RespConnectionError)
        assert await client.call("PING") == b"PONG"
        assert connections == 2


async def test_a_server_hanging_up_fails_what_is_in_flight_then_the_client_reconnects() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_command(reader)
        if connections == 1:
            writer.close()  # hangs up instead of answering
            return
        writer.write(b":42\r\n")
        await writer.drain()
        await reader.read()

    async with scripted(handler) as url, client_on(url, timeout=2.0) as client:
        with pytest.raises(RespConnectionError, match="lost"):
            await client.call("GET", "k")
        assert await client.call("GET", "k") == 42


async def test_garbage_or_unasked_replies_close_the_connection() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_command(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await reader.read()

    async with scripted(garbage) as url, client_on(url, timeout=2.0) as client:
        with pytest.raises(RespConnectionError, match="not RESP"):
            await client.call("PING")

    async def unasked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_command(reader)
        writer.write(b"+PONG\r\n+PONG\r\n")  # two replies to one command
        await reader.read()

    async with scripted(unasked) as url, client_on(url, timeout=2.0) as client:
        assert await client.call("PING") == b"PONG"
        await asyncio.sleep(0.05)
        assert not client.connected


async def test_auth_and_select_come_first_on_every_connection() -> None:
    seen: list[list[bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_command(reader))
            writer.write(b"+OK\r\n")

    async with (
        scripted(handler) as url,
        client_on(url.replace("//", "//app:s3cret@").replace("/0", "/5"), timeout=2.0) as client,
    ):
        assert await client.call("SET", "k", "v") == b"OK"
    assert seen == [[b"AUTH", b"app", b"s3cret"], [b"SELECT", b"5"], [b"SET", b"k", b"v"]]


async def test_a_refused_password_is_the_error_of_the_call() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_command(reader)
        writer.write(b"-WRONGPASS invalid username-password pair\r\n")
        await reader.read()

    async with scripted(handler) as url, client_on(url.replace("//", "//:bad@"), timeout=2.0) as client:
        with pytest.raises(ReplyError, match="WRONGPASS"):
            await client.call("PING")
        assert not client.connected


# -- the limiter's settlement without awaiting ----------------------------------------------


async def test_settle_now_sends_the_settlement_and_frees_the_slot(url: str) -> None:
    prefix = f"cs-test-{secrets.token_hex(6)}:"
    limiter = RedisLimiter(url, prefix=prefix)
    admission = Admission(scopes=(Scope("key:1", rpm=100, concurrency=1),), tokens=10)
    try:
        lease = await limiter.acquire(admission)
        assert not limiter.settle_now(lease, 5, 0)  # the settle script is not loaded yet
        assert not lease.settled
        await limiter.settle(lease, 5, 0)  # loads it
        lease = await limiter.acquire(admission)
        assert limiter.settle_now(lease, 5, 0) and lease.settled
        await limiter._client.drain(5.0)
        lease = await limiter.acquire(admission)  # the one slot is free again
        limiter._shas["settle"] = "0" * 40  # as after a Redis restart: NOSCRIPT, loaded, run again
        assert limiter.settle_now(lease, 5, 0)
        await limiter._client.drain(5.0)
        if limiter._reloads:
            await asyncio.wait(set(limiter._reloads), timeout=5.0)
        assert limiter._shas["settle"] != "0" * 40
        await limiter.acquire(admission)  # settled by the reloaded script: the slot is free
        with pytest.raises(RateLimited, match="Concurrency limit of 1"):
            await limiter.acquire(admission)
    finally:
        await limiter.close()
        await delete_prefix(url, prefix)


async def test_admissions_count_under_their_own_keys_whatever_the_cached_shapes(url: str) -> None:
    """The limiter keeps each policy's keys encoded (by the identity of its scopes tuple): a
    policy reloaded with new limits, another policy's scopes, and a cache emptied when full all
    count each admission under the keys of its own scopes."""
    prefix = f"cs-test-{secrets.token_hex(6)}:"
    limiter = RedisLimiter(url, prefix=prefix)
    r = aioredis.Redis.from_url(url)
    try:
        for round_ in range(3):
            for n in (1, 2):  # two policies, made anew each round (as a policy reload does)
                admission = Admission(scopes=(Scope(f"key:{n}", rpm=2, concurrency=5),), tokens=10)
                if round_ < 2:
                    await limiter.acquire(admission)
                else:
                    with pytest.raises(RateLimited, match="Rate limit of 2 requests"):
                        await limiter.acquire(admission)  # two admissions each: full
            if round_ == 0:
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(redis_module, "SHAPES_KEPT", 1)
                    limiter._shape(Admission(scopes=(Scope("key:3", rpm=9),), tokens=1))  # clears the cache
                assert len(limiter._shapes) == 1
        for n in (1, 2):
            # the two admissions, beside the token sum (the member '#', scored <= 0)
            assert await r.zcount(f"{prefix}win:key:{n}", "(0", "+inf") == 2
        assert not await r.exists(f"{prefix}win:key:3")
        # The same scopes with another quota or balance seed (a reloaded policy): its own figures count.
        scopes = (Scope("key:4", rpm=100),)
        for limit in (100, 25):
            quota = Quota("quota:4:1", limit=limit, used_seed=0, period_end=time.time() + 3600)
            await limiter.acquire(Admission(scopes=scopes, tokens=10, quota=quota))
        with pytest.raises(RateLimited, match="Token quota of 25 tokens"):
            await limiter.acquire(Admission(scopes=scopes, tokens=10, quota=quota))
        for seed in (10**9, 5):
            admission = Admission(scopes, tokens=1, account_id=4, cost_nanos=3, balance_seed=seed)
            await limiter.acquire(admission)  # the first seeds the counter: the second seed is not used
        assert await limiter.balance(4) == 10**9 - 6
    finally:
        await r.aclose()
        await limiter.close()
        await delete_prefix(url, prefix)
