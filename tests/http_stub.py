"""A real HTTP server on a free 127.0.0.1 port whose answers a test writes: a front door that fails on demand, a
server that records what reaches it. Not a mock of MedLens: what it stands for is the network around it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


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
