"""A real HTTP server on a free 127.0.0.1 port whose answers a test writes: a front door that fails on demand, a
server that records what reaches it. Not a mock of MedLens: what it stands for is the network around it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query string
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


def json_error(status: int, error: str, detail: str) -> Answer:
    """An answer in MedLens's error form (``{"error", "detail"}``)."""
    return Answer(status, f'{{"error": "{error}", "detail": "{detail}"}}'.encode())


_HOP_BY_HOP = {"host", "content-length", "connection"}


def passed_on(serving_url: str, request: Request, timeout: float = 240.0) -> Answer:
    """``request`` sent on to ``serving_url`` as it came (headers, token and body), and serving's own answer."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    answer = httpx.request(
        request.method, serving_url + request.path, headers=headers, content=request.body or None, timeout=timeout
    )
    return Answer(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))


def front_door(serving_url: str, instead: Callable[[Request], Answer | None]) -> Callable[[Request], Answer]:
    """A front door to real serving for ``http_stub``: each request gets ``instead``'s answer where it gives one
    (a failure on demand), and serving's own otherwise."""

    def answer(request: Request) -> Answer:
        return instead(request) or passed_on(serving_url, request)

    return answer


@contextmanager
def http_stub(answer: Callable[[Request], Answer]) -> Iterator[str]:
    """Serve ``answer`` (called once per request, from the server's threads) until the block ends; yields the
    server's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            reply = answer(Request(self.command, self.path, dict(self.headers.items()), body))
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
