"""The part every test HTTP server shares: a threaded server on 127.0.0.1 that ``with`` starts
in a background thread and stops again."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up early (a size limit, a timeout) is expected in tests


class LocalServer:
    """Subclasses call :meth:`serve` with their request handler class in ``__init__``."""

    def serve(self, handler, port: int = 0) -> None:
        self._httpd = _QuietServer(("127.0.0.1", port), handler)
        self.port = self._httpd.server_address[1]

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
