"""The SSE decoder: frame splitting at any read boundary and any line ending."""

from __future__ import annotations

import pytest

from claudestore.protocol.sse import SSEDecoder, encode_event

STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b": keep-alive\n\n"
    b'event: content_block_delta\ndata: {"a":\n'
    b"data: 1}\n\n"
    b"data: [DONE]\n\n"
)


def _decode(chunks: list[bytes]) -> list[tuple[str | None, bytes, bool]]:
    dec = SSEDecoder()
    frames = [f for c in chunks for f in dec.feed(c)] + dec.flush()
    return [(f.event, f.data, f.is_comment) for f in frames]


EXPECTED = [
    ("message_start", b'{"type":"message_start"}', False),
    (None, b"", True),
    ("content_block_delta", b'{"a":\n1}', False),
    (None, b"[DONE]", False),
]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_and_line_ending(ending: bytes) -> None:
    data = STREAM.replace(b"\n", ending)
    assert _decode([data]) == EXPECTED
    for i in range(1, len(data)):
        assert _decode([data[:i], data[i:]]) == EXPECTED, i
    assert _decode([bytes([b]) for b in data]) == EXPECTED


def test_unterminated_last_frame_is_not_dispatched() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: 1\n\ndata: 2\n") and dec.pending == b"data: 2\n"
    assert dec.flush() == []


def test_raw_bytes_are_kept_for_relay() -> None:
    dec = SSEDecoder()
    frames = dec.feed(STREAM)
    assert b"".join(f.raw for f in frames) == STREAM


def test_encode_event() -> None:
    assert encode_event("ping", b'{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode_event(None, b"[DONE]") == b"data: [DONE]\n\n"
