"""Serve a run's viewer on loopback with the standard library's threaded HTTP server."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from pipeline.view.site import Site

log = logging.getLogger(__name__)


def make_server(site: Site, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to `host:port` (0: any free port) answering every path from `site`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            try:
                page = site.page(path)
            except Exception:  # one bad record never takes the viewer down
                log.exception("cannot render %s", path)
                self._send(500, b"this page could not be rendered; see the viewer's log", "text/plain")
                return
            if page is None:
                self._send(404, f"nothing at {path}".encode(), "text/plain; charset=utf-8")
            else:
                self._send(200, page.body, page.content_type)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(site: Site, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; returns the server (call shutdown()) and its base URL."""
    server = make_server(site, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"
