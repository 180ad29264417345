"""A real HTTPS server for K5 discovery tests: replies, hit counts, a keyring pointed at it."""

from __future__ import annotations

import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mcp_attest import DiscoveringKeyring

CERT_NAMES = ("localhost", "issuer.test")


@dataclass
class Reply:
    """What the server answers on one path; ``drip`` sends the body byte by byte."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0


@dataclass
class Site:
    """The running server: set ``routes``, read ``hits``."""

    port: int
    client_context: ssl.SSLContext
    routes: dict[str, Reply] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    @property
    def iss(self) -> str:
        return f"https://localhost:{self.port}"

    def keyring(self, **kwargs: Any) -> DiscoveringKeyring:
        """A discovering keyring for this site's issuer, opted into loopback and the test CA."""
        kwargs.setdefault("issuers", [self.iss])
        kwargs.setdefault("allow_private_addresses", True)
        kwargs.setdefault("ssl_context", self.client_context)
        return DiscoveringKeyring(**kwargs)


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        site = self.server.site
        site.hits[self.path] += 1
        reply = site.routes.get(self.path, Reply(b"not found", status=404))
        time.sleep(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if not reply.drip:
            self.wfile.write(reply.body)
            return
        for index in range(len(reply.body)):
            self.wfile.write(reply.body[index : index + 1])
            self.wfile.flush()
            time.sleep(reply.drip)

    def log_message(self, *_: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    site: Site

    def handle_error(self, *_: Any) -> None:
        pass  # clients that give up early (timeouts, refusals) are the point of these tests
