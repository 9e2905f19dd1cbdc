"""A loopback server that speaks the Anthropic Messages API and OpenAI Chat Completions.

It replays a script: each request takes the next reply. A reply is the text of an answer
(a str), an error (`Error(status, ...)`), or a function of the request returning either.
Every request is kept in `history` (path, headers, parsed body) for tests to inspect.
The official SDKs talk to it over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Error:
    status: int
    message: str = "scripted error"
    headers: dict = field(default_factory=dict)


@dataclass
class Answer:
    text: str
    cost: float | None = None  # reported as usage.cost (OpenAI-compatible routers do this)


@dataclass
class Turn:
    """An assistant turn that calls tools (Anthropic Messages `tool_use` blocks), text optional."""

    text: str = ""
    tools: list = field(default_factory=list)  # [(tool name, input dict), ...]


@dataclass
class Request:
    path: str
    headers: dict
    body: dict

    @property
    def api(self) -> str:
        if self.path.endswith("/messages"):
            return "anthropic"
        return "responses" if self.path.endswith("/responses") else "openai"

    def texts(self) -> list[str]:
        """Every message text in the request, system prompt included."""
        out = []
        for key in ("system", "instructions"):
            if isinstance(self.body.get(key), str):
                out.append(self.body[key])
        for m in [*self.body.get("messages", []), *(i for i in self.body.get("input", []) if isinstance(i, dict))]:
            content = m.get("content")
            if isinstance(content, str):
                out.append(content)
            elif isinstance(content, list):
                out += [c.get("text", "") for c in content if isinstance(c, dict)]
        return out

    def tool_results(self) -> list[dict]:
        """The tool results the client sent back, oldest first (Messages or Responses API)."""
        if self.api == "responses":
            return [i for i in self.body.get("input", []) if isinstance(i, dict) and i.get("type") == "function_call_output"]
        out = []
        for m in self.body.get("messages", []):
            if isinstance(m.get("content"), list):
                out += [c for c in m["content"] if isinstance(c, dict) and c.get("type") == "tool_result"]
        return out

    def last_user(self) -> str:
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        if not users:
            return ""
        content = users[-1].get("content")
        if isinstance(content, list):
            return "".join(c.get("text", "") for c in content if isinstance(c, dict))
        return content or ""


Reply = Any  # str | Answer | Turn | Error | Callable[[Request], str | Answer | Turn | Error]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a reply left sleeping must not hold up shutdown

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (a timeout test) is not news


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeLLM:
    def __init__(self, script: list[Reply] | None = None) -> None:
        self.script: list[Reply] = list(script or [])
        self.history: list[Request] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def __enter__(self) -> "FakeLLM":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request: Request) -> Reply:
        with self._lock:
            self.history.append(request)
            if not self.script:
                return Error(500, "the fake's script is exhausted")
            reply = self.script.pop(0)
        return reply(request) if callable(reply) else reply

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.split("?")[0].rstrip("/").endswith("/responses"):
                    self._send(404, {"error": {"message": "no WebSocket here: use HTTPS"}})  # Codex then falls back
                elif self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "body is not JSON"}})
                    return
                path = self.path.split("?")[0].rstrip("/")
                if not path.endswith(("/messages", "/chat/completions", "/responses")):
                    self._send(404, {"error": {"message": f"no route {path}"}})
                    return
                request = Request(path, {k.lower(): v for k, v in self.headers.items()}, body)
                reply = fake._next(request)
                anthropic = request.api == "anthropic"
                if isinstance(reply, Error):
                    kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(reply.status, "api_error")
                    payload = ({"type": "error", "error": {"type": kind, "message": reply.message}} if anthropic
                               else {"error": {"message": reply.message, "type": kind, "code": None}})
                    self._send(reply.status, payload, reply.headers)
                    return
                turn = reply if isinstance(reply, Turn) else None
                answer = reply if isinstance(reply, Answer) else Answer(turn.text if turn else str(reply))
                tokens_in = sum(_tokens(t) for t in request.texts())
                tokens_out = _tokens(answer.text)
                model = body.get("model", "fake-model")
                if request.api == "responses":
                    self._responses(model, answer.text, turn.tools if turn else [], tokens_in, tokens_out)
                    return
                if body.get("stream"):
                    if not anthropic:
                        self._send(400, {"error": {"message": "this fake streams the Messages and Responses APIs only"}})
                        return
                    self._stream(model, answer.text, turn.tools if turn else [], tokens_in, tokens_out)
                    return
                if anthropic:
                    self._send(200, {
                        "id": f"msg_fake{len(fake.history)}", "type": "message", "role": "assistant",
                        "model": model, "content": [{"type": "text", "text": answer.text}],
                        "stop_reason": "end_turn", "stop_sequence": None,
                        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
                    }, {"request-id": f"req_fake{len(fake.history)}"})
                else:
                    usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                             "total_tokens": tokens_in + tokens_out}
                    if answer.cost is not None:
                        usage["cost"] = answer.cost
                    self._send(200, {
                        "id": f"chatcmpl-fake{len(fake.history)}", "object": "chat.completion",
                        "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer.text}}],
                        "usage": usage,
                    })

            def _stream(self, model, text, tools, tokens_in, tokens_out) -> None:
                """The Messages API's server-sent events: message, blocks, deltas, stop."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()

                def event(kind, data):
                    self.wfile.write(f"event: {kind}\ndata: {json.dumps(dict(type=kind, **data))}\n\n".encode())

                event("message_start", {"message": {
                    "id": f"msg_fake{len(fake.history)}", "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": tokens_in, "output_tokens": 1}}})
                index = 0
                if text:
                    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
                    event("content_block_stop", {"index": 0})
                    index = 1
                for number, (name, arguments) in enumerate(tools):
                    block = {"type": "tool_use", "id": f"toolu_fake{len(fake.history)}_{number}", "name": name, "input": {}}
                    event("content_block_start", {"index": index, "content_block": block})
                    event("content_block_delta", {"index": index, "delta": {
                        "type": "input_json_delta", "partial_json": json.dumps(arguments)}})
                    event("content_block_stop", {"index": index})
                    index += 1
                event("message_delta", {"delta": {"stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None},
                                        "usage": {"output_tokens": tokens_out}})
                event("message_stop", {})
                self.wfile.flush()
                self.close_connection = True

            def _responses(self, model, text, tools, tokens_in, tokens_out) -> None:
                """The Responses API's server-sent events: created, each output item done, completed."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                rid = f"resp_fake{len(fake.history)}"
                items = [{"type": "function_call", "id": f"fc_{rid}_{n}", "call_id": f"call_{rid}_{n}", "name": name,
                          "arguments": json.dumps(arguments), "status": "completed"}
                         for n, (name, arguments) in enumerate(tools)]
                if text:
                    items.append({"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": "completed",
                                  "content": [{"type": "output_text", "text": text, "annotations": []}]})

                def event(kind, data):
                    self.wfile.write(f"event: {kind}\ndata: {json.dumps(dict(type=kind, **data))}\n\n".encode())

                head = {"id": rid, "object": "response", "model": model, "created_at": int(time.time())}
                event("response.created", {"response": dict(head, status="in_progress", output=[])})
                for index, item in enumerate(items):
                    event("response.output_item.added", {"output_index": index, "item": item})
                    event("response.output_item.done", {"output_index": index, "item": item})
                event("response.completed", {"response": dict(head, status="completed", output=items, usage={
                    "input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": tokens_in + tokens_out})})
                self.wfile.flush()
                self.close_connection = True

        return Handler


def search_replace(path: str, search: str, replace: str, description: str) -> str:
    """An answer in our edit format that changes `search` into `replace` in `path`."""
    return (f"DESCRIPTION: {description}\n\n<<<<<<< SEARCH {path}\n{search.rstrip(chr(10))}\n=======\n"
            f"{replace.rstrip(chr(10))}\n>>>>>>> REPLACE\n")
