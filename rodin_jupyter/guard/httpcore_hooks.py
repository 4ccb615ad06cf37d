"""Hooks at httpcore's connection pools: where httpx (any transport built on
``httpx.HTTPTransport``) and ``httpcore.request`` alike send, so one check covers both.

A billable request's body stream is read into bytes (a generator or file would be
consumed), priced, and sent as those bytes. Its answer settles the reservation when the
caller has read it or closed it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from rodin_jupyter.guard.body import header
from rodin_jupyter.guard.decision import billable_endpoint
from rodin_jupyter.guard.marks import is_post
from rodin_jupyter.guard.pending import Pending

Admit = Callable[[str, str, str | None, object], "Pending | None"]
ANSWER_LIMIT = 65536


def request_url(request: Any) -> str:
    url = request.url
    host = url.host.decode("ascii", "replace")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme.decode('ascii', 'replace')}://{host}{port}" \
           f"{url.target.decode('latin-1')}"


class _Answer:
    """Collects an answer's first bytes as the caller reads them; settles once."""

    def __init__(self, pending: Pending, status: int, stream: Any) -> None:
        self.pending, self.status, self.stream = pending, status, stream
        self.data: bytearray | None = bytearray()
        self.settled = False

    def take(self, chunk: bytes) -> None:
        if self.data is not None:
            self.data += chunk
            if len(self.data) > ANSWER_LIMIT:
                self.data = None

    def settle(self, complete: bool) -> None:
        if not self.settled:
            self.settled = True
            body = bytes(self.data) if complete and self.data is not None else None
            self.pending.done(self.status, body)


class _SyncAnswer(_Answer):
    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.stream:
            self.take(chunk)
            yield chunk
        self.settle(True)

    def close(self) -> None:
        try:
            if hasattr(self.stream, "close"):
                self.stream.close()
        finally:
            self.settle(False)


class _AsyncAnswer(_Answer):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.take(chunk)
            yield chunk
        self.settle(True)

    async def aclose(self) -> None:
        try:
            if hasattr(self.stream, "aclose"):
                await self.stream.aclose()
        finally:
            self.settle(False)


class _Bytes:
    """A body already read, offered as the sync and async stream httpcore iterates."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def hook_pool(admit: Admit) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def handle_request(pool: Any, request: Any) -> Any:
            method = request.method
            if not is_post(method) or billable_endpoint(method, url := request_url(request)) \
                    is None:
                return original(pool, request)
            data = b"".join(request.stream)
            request.stream = _Bytes(data)
            pending = admit(method, url, header(request.headers, "Content-Type"), data)
            if pending is None:
                return original(pool, request)
            try:
                response = original(pool, request)
            except BaseException:
                pending.failed()
                raise
            response.stream = _SyncAnswer(pending, response.status, response.stream)
            return response
        return handle_request
    return make


def hook_async_pool(admit: Admit) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        async def handle_async_request(pool: Any, request: Any) -> Any:
            method = request.method
            if not is_post(method) or billable_endpoint(method, url := request_url(request)) \
                    is None:
                return await original(pool, request)
            data = b"".join([chunk async for chunk in request.stream])
            request.stream = _Bytes(data)
            pending = admit(method, url, header(request.headers, "Content-Type"), data)
            if pending is None:
                return await original(pool, request)
            try:
                response = await original(pool, request)
            except BaseException:
                pending.failed()
                raise
            response.stream = _AsyncAnswer(pending, response.status, response.stream)
            return response
        return handle_async_request
    return make


__all__ = ["hook_async_pool", "hook_pool", "request_url"]
