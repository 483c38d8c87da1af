"""A small OpenAI-compatible model server on 127.0.0.1 for the tests: ``/v1/models`` and a
streamed (server-sent events) ``/v1/chat/completions`` whose answers are scripted per model name.

Each request is recorded (``server.requests``) so a test can read the prompt and the options the
client sent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from local_http import LocalServer


@dataclass
class Script:
    """What the server does for one model.

    ``pieces`` are streamed one event each, ``delay`` seconds apart, after ``first_delay``;
    ``status`` other than 200 answers with that error instead; ``garbage`` sends a non-JSON
    event after the pieces; ``drop`` closes the connection after the pieces without ending the
    stream; ``content_type`` overrides the stream's type; ``error_event`` sends an error object
    inside the stream after the pieces."""

    pieces: tuple[str, ...] = ()
    first_delay: float = 0.0
    delay: float = 0.0
    status: int = 200
    message: str = "scripted failure"
    garbage: bool = False
    drop: bool = False
    error_event: bool = False
    content_type: str = "text/event-stream"

    @classmethod
    def words(cls, text: str, **kw) -> Script:
        """``text`` streamed a word at a time."""
        return cls(tuple(w + " " for w in text.split(" ")), **kw)


class ModelServer(LocalServer):
    """``with ModelServer({"name": Script(...)}) as server:`` serves at ``server.url`` (the
    ``/v1`` base) on ``port`` (default: a free one), from the moment it is entered; with
    ``key``, only requests that carry that bearer key."""

    def __init__(self, scripts: dict[str, Script] | None = None, key: str = "", port: int = 0):
        self.scripts = dict(scripts or {})
        self.key = key
        self.requests: list[dict] = []
        self.disconnects = 0
        self.serve(self._handler(), port)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
                    self._json(401, {"error": {"message": "invalid api key",
                                               "type": "authentication_error"}})
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path.rstrip("/") != "/v1/models":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                self._json(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "tests"}
                    for name in sorted(server.scripts)]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if not self._authorised():
                    return
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                script = server.scripts.get(body.get("model"))
                if script is None:
                    return self._json(404, {"error": {
                        "message": f"model '{body.get('model')}' not found",
                        "type": "not_found_error"}})
                if script.status != 200:
                    return self._json(script.status, {"error": {"message": script.message}})
                self.send_response(200)
                self.send_header("Content-Type", script.content_type)
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                try:
                    if self._stream(script, body):
                        self.wfile.write(b"0\r\n\r\n")  # the end of the chunked body
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnects += 1

            def _event(self, data: str) -> None:
                event = f"data: {data}\n\n".encode()
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()

            def _stream(self, script: Script, body: dict) -> bool:
                """Stream the script's events; whether the body is to be ended properly."""
                time.sleep(script.first_delay)
                base = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                        "created": 0, "model": body["model"]}
                self._event(json.dumps({**base, "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""},
                     "finish_reason": None}]}))
                for i, piece in enumerate(script.pieces):
                    if i:
                        time.sleep(script.delay)
                    self._event(json.dumps({**base, "choices": [
                        {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
                if script.garbage:
                    self._event("{this is not json")
                    return True
                if script.error_event:
                    self._event(json.dumps({"error": {"message": "the model crashed"}}))
                    return True
                if script.drop:
                    return False  # the connection closes in the middle of the body
                self._event(json.dumps({**base, "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "stop"}]}))
                self._event("[DONE]")
                return True

        return Handler
