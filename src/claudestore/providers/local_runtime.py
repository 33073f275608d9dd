"""The local model's worker: one llama.cpp instance driven by one thread, fed by a bounded queue.

A llama.cpp context is not thread-safe, so each ``local`` upstream loads its model once, in
its own thread, and runs one generation at a time there; the event loop never waits on it.
Requests wait in FIFO order; when ``max_queue`` are already waiting behind the running one,
``submit`` raises ``Overloaded`` at once. The worker checks a job's cancellation flag
before each token, so a client that goes away frees the model within one token's time.

Results travel back to the event loop as events on the job's ``asyncio.Queue``:
``("text", str)``, then ``("end", finish_reason, completion_tokens)`` or ``("error", message)``.
``completion_tokens`` counts every token the model sampled except an end-of-generation token.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from claudestore.core.errors import Overloaded
from claudestore.providers.local_prompt import Conversation, Sampling

__all__ = ["Engine", "Event", "Job", "LocalModel"]

Event = tuple[Any, ...]
log = logging.getLogger("claudestore.local")


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A loaded model: the ``llama_cpp.Llama`` instance and how to prompt it."""

    llm: Any
    n_ctx: int
    build_prompt: Callable[[Conversation], list[int]]
    is_eog: Callable[[int], bool]


class Job:
    """One generation request; made on the event loop, run on the worker thread."""

    __slots__ = ("_loop", "cancelled", "engine", "events", "prompt", "queued", "sampling")

    def __init__(self, prompt: list[int], sampling: Sampling) -> None:
        self.prompt = prompt
        self.sampling = sampling
        self.cancelled = threading.Event()
        self._loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.engine: Engine | None = None
        self.queued = False  # holds a place in its engine's queue (guarded by the engine's lock)

    def cancel(self) -> None:
        self.cancelled.set()
        if self.engine is not None:
            self.engine.release(self, only_waiting=True)

    def emit(self, event: Event) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled.set()


class Engine:
    """Owns the worker thread of one local upstream."""

    def __init__(self, load: Callable[[], LocalModel], *, max_queue: int, name: str) -> None:
        self.name = name
        self.max_queue = max_queue
        self.loaded: concurrent.futures.Future[LocalModel] = concurrent.futures.Future()
        self._load = load
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight = 0  # the running job plus those waiting (a cancelled waiting job leaves at once)
        self._running: Job | None = None
        self._thread = threading.Thread(target=self._run, name=f"claudestore-local-{name}", daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._in_flight > self.max_queue:
                raise Overloaded(
                    f"The local model of upstream {self.name!r} is busy: one request is generating and "
                    f"{self._in_flight - 1} are waiting (max_queue: {self.max_queue}). Retry shortly.",
                    retry_after=1.0,
                )
            self._in_flight += 1
            job.engine, job.queued = self, True
        self._jobs.put(job)

    def release(self, job: Job, *, only_waiting: bool = False) -> None:
        """Give back ``job``'s place: when it ends, or at once when it is cancelled while waiting."""
        with self._lock:
            if job.queued and not (only_waiting and job is self._running):
                job.queued = False
                self._in_flight -= 1

    def shutdown(self) -> None:
        """Stop the worker after the current job (jobs still waiting are dropped)."""
        self._jobs.put(None)

    def _run(self) -> None:
        try:
            model = self._load()
        except BaseException as exc:
            log.exception("upstream %r: the local model could not be loaded", self.name)
            self.loaded.set_exception(exc)
            return
        self.loaded.set_result(model)
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self._running = job
            try:
                if not job.cancelled.is_set():
                    generate(model, job)
            except Exception as exc:
                log.exception("upstream %r: generation failed", self.name)
                job.emit(("error", f"The local model failed while generating: {exc}"))
            finally:
                self.release(job)
                with self._lock:
                    self._running = None


def generate(model: LocalModel, job: Job) -> None:
    """Run one job to its end, its token budget, a stop sequence or its cancellation."""
    llm, s = model.llm, job.sampling
    budget = model.n_ctx - len(job.prompt)
    limit = budget if s.max_tokens is None else min(s.max_tokens, budget)
    llm.set_seed(s.seed if s.seed is not None else random.getrandbits(32))
    text = StopText(s.stop)
    count, finish = 0, "length"
    tokens = llm.generate(
        job.prompt,
        top_k=s.top_k,
        top_p=s.top_p,
        temp=s.temperature,
        frequency_penalty=s.frequency_penalty,
        presence_penalty=s.presence_penalty,
        repeat_penalty=1.0,
        reset=True,
    )
    try:
        for token in tokens:
            if job.cancelled.is_set():
                return
            if model.is_eog(token):
                finish = "stop"
                break
            count += 1
            piece, stopped = text.feed(llm.detokenize([token]))
            if piece:
                job.emit(("text", piece))
            if stopped:
                job.emit(("end", "stop", count))
                return
            if count >= limit:
                break
    finally:
        tokens.close()
    if tail := text.flush():
        job.emit(("text", tail))
    job.emit(("end", finish, count))


class StopText:
    """Incremental UTF-8 decoding with stop sequences: text that might begin a stop sequence is
    held back until the next token shows it does not."""

    __slots__ = ("_decoder", "_held", "_stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = ""

    def feed(self, data: bytes) -> tuple[str, bool]:
        """(text that can be sent now, whether a stop sequence was reached)."""
        held = self._held + self._decoder.decode(data)
        found = [i for i in (held.find(s) for s in self._stops) if i >= 0]
        if found:
            self._held = ""
            return held[: min(found)], True
        keep = 0
        for k in range(min(len(held), max((len(s) for s in self._stops), default=1) - 1), 0, -1):
            if any(s.startswith(held[-k:]) for s in self._stops):
                keep = k
                break
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep], False

    def flush(self) -> str:
        out = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return out
