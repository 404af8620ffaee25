"""A real OpenAI-compatible HTTP server on the loopback address, serving a tiny keyword model, with scripted
answers, rate limits and server errors on demand."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

POSITIVE = {"great", "fast", "quickly", "love", "good"}


def query_text(messages: list[dict]) -> str:
    """The query of a prompt: the text after its last ``Text:`` line (the generic prompt's)."""
    user = messages[-1]["content"]
    found = re.findall(r"Text: (.*)\nAnswer:", user)
    return found[-1] if found else user


def keyword_model(body: dict) -> str:
    """The tiny model: ``positive`` when the query has a positive word; a JSON object when asked for one."""
    text = query_text(body["messages"])
    label = "positive" if POSITIVE & set(text.lower().split()) else "negative"
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    if schema is not None:
        return json.dumps({key: label for key in schema["properties"]})
    return label


class ChatServer:
    """``/v1/chat/completions`` on 127.0.0.1.

    Attributes:
        url: The base URL (``http://127.0.0.1:<port>/v1``).
        script: Query text -> answer text, before the keyword model.
        failures: Status codes to answer the next requests with (429 and 5xx carry ``retry-after-ms: 1``).
        block_after: Once this many answers were sent, further requests wait for ``release``, then get no answer.
        requests: The bodies of the requests answered with 200; ``attempts`` counts every request.
        auth: The Authorization header of each request.
        delay: Seconds each answer takes; ``most_in_flight``: the most requests answered at once.
        served_model: The model name every answer gives (a server that ignores the requested one, as llama.cpp's
            does); unset: the requested name.
        raw: ``(content type, body)`` to answer the next 200 requests with instead of a completion (an HTML page,
            truncated JSON, an empty ``choices`` list).
    """

    def __init__(self) -> None:
        self.script: dict[str, str] = {}
        self.failures: list[int] = []
        self.block_after: int | None = None
        self.release = threading.Event()
        self.requests: list[dict] = []
        self.attempts = 0
        self.auth: list[str | None] = []
        self.delay = 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.served_model: str | None = None
        self.raw: list[tuple[str, bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.attempts += 1
                    server.auth.append(self.headers.get("Authorization"))
                    status = server.failures.pop(0) if server.failures else 200
                    raw = server.raw.pop(0) if server.raw and status == 200 else None
                    blocked = server.block_after is not None and len(server.requests) >= server.block_after
                if status != 200:
                    return self._send(status, {"error": {"message": f"scripted {status}", "type": "test"}})
                if raw is not None:
                    return self._send_bytes(200, *raw)
                if blocked:  # hold the request until the test has killed its client, then drop it unanswered
                    server.release.wait(timeout=60)
                    return self._send(503, {"error": {"message": "dropped", "type": "test"}})
                with server.lock:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                time.sleep(server.delay)
                text = server.script.get(query_text(body["messages"])) or keyword_model(body)
                with server.lock:
                    server.in_flight -= 1
                    server.requests.append(body)
                prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": server.served_model or body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": len(text.split()),
                            "total_tokens": prompt_tokens + len(text.split()),
                        },
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                self._send_bytes(status, "application/json", json.dumps(payload).encode())

            def _send_bytes(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if status == 429 or status >= 500:
                    self.send_header("retry-after-ms", "1")
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (a timeout test): not the server's error. Printed, its traceback would land
                    # in whichever test this worker runs next and fail its "no Traceback" check.
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    with ChatServer() as server:
        yield server
