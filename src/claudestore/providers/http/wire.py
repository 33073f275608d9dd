"""What the client puts on the wire and takes off it: origins, the request head, response
headers, errors and body decoders."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class UpstreamConnectionError(Exception):
    """The upstream could not be connected to, or the connection broke, or it spoke no HTTP/1.1."""


class ConnectTimeout(UpstreamConnectionError, TimeoutError):
    """The TCP (and TLS) connection was not made within the connect timeout."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """``https://host:port/path?q`` → (origin, request target ``/path?q``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Origin(parts.scheme, parts.hostname, port), target


def encode_head(target: str, origin: Origin, headers: dict[str, str]) -> bytes:
    """The request line and the fixed headers of a POST (``content-length`` is added per request).
    Refuses CR, LF and NUL in names and values: nothing may smuggle a header or a request."""
    lines = [f"POST {target} HTTP/1.1", f"host: {origin.host_header}"]
    for name, value in headers.items():
        check_header(name, value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in "\r\n\0: ") or any(c in value for c in "\r\n\0"):
        raise ValueError(f"invalid HTTP header {name!r}")


class Headers(dict[str, str]):
    """Response headers by lower-case name; a repeated field's values joined by ``, ``."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


def body_decoder(encoding: str | None) -> Any:
    if not encoding or encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    raise UpstreamConnectionError(f"The upstream sent a body in an unsupported encoding ({encoding[:40]}).")


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped (as the RFC says) or raw (as some do)."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._d is None:
            raw = not data or (data[0] & 0x0F) != 8  # a zlib header names method 8
            self._d = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return self._d.flush() if self._d is not None else b""
