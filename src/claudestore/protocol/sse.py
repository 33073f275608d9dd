"""Server-Sent Events codec: bytes in, frames out, and frames back to bytes.

Knows nothing of HTTP. The decoder splits a byte stream into frames at blank lines
(``\\n\\n``; ``\\r\\n`` and lone ``\\r`` are normalised first) and keeps each frame's raw
bytes so that a pass-through relay can forward it untouched. Field parsing
(``event``/``data``) happens only when asked for, so relaying a frame costs a byte
scan.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["Frame", "SSEDecoder", "encode_event", "json_object"]


class Frame:
    """One SSE frame. ``raw`` ends with the blank line that dispatched it."""

    __slots__ = ("_data", "_event", "_parsed", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._parsed = False
        self._event: str | None = None
        self._data: bytes = b""

    def _parse(self) -> None:
        raw = self.raw
        # Fast path: the usual ``[event: X\n]data: Y\n\n`` frame with one data line.
        if raw.startswith(b"event: "):
            nl = raw.find(b"\n")
            if raw.startswith(b"data: ", nl + 1) and raw.find(b"\n", nl + 1) == len(raw) - 2:
                self._event = raw[7:nl].decode("utf-8", "replace")
                self._data = raw[nl + 7 : -2]
                self._parsed = True
                return
        elif raw.startswith(b"data: ") and raw.find(b"\n") == len(raw) - 2:
            self._data = raw[6:-2]
            self._parsed = True
            return
        event: str | None = None
        data: list[bytes] = []
        for line in self.raw.split(b"\n"):
            if not line or line[0] == 58:  # b":" comment
                continue
            name, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
        self._event = event
        self._data = b"\n".join(data)
        self._parsed = True

    @property
    def event(self) -> str | None:
        if not self._parsed:
            self._parse()
        return self._event

    @property
    def data(self) -> bytes:
        if not self._parsed:
            self._parse()
        return self._data

    @property
    def is_comment(self) -> bool:
        """True for frames made only of ``:`` comment lines (keep-alives)."""
        return all(not line or line[0] == 58 for line in self.raw.split(b"\n"))

    def __repr__(self) -> str:
        return f"Frame({self.raw!r})"


class SSEDecoder:
    """Incremental splitter: ``feed`` bytes as they arrive, get complete frames back."""

    __slots__ = ("_buf", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Frame]:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # a CRLF may be split across reads
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        if b"\n\n" not in buf:
            self._buf = buf
            return []
        parts = buf.split(b"\n\n")
        self._buf = parts.pop()
        return [Frame(p + b"\n\n") for p in parts if p.strip(b"\n")]

    def flush(self) -> list[Frame]:
        """Frames completed by a CR held back at EOF; an unterminated last frame is dropped (SSE spec)."""
        frames = self.feed(b"\n") if self._pending_cr else []
        self._buf = b""
        self._pending_cr = False
        return frames

    @property
    def pending(self) -> bytes:
        """Bytes received that do not yet form a complete frame."""
        return self._buf


def json_object(frame: Frame) -> dict[str, Any] | None:
    """The frame's data as a JSON object, or None when it is not one."""
    try:
        obj = orjson.loads(frame.data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def encode_event(event: str | None, data: bytes) -> bytes:
    """One frame: ``event: NAME`` (when given) and one ``data:`` line, then a blank line."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
