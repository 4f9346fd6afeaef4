"""An OpenAI-compatible chat endpoint's double, as vLLM serves one: POST
/v1/chat/completions answers OpenAI's `chat.completion` object (id, object, created,
model, choices[].message.role/content, finish_reason, usage) and its errors in OpenAI's
shape (`{"error": {"message", "type", "param", "code"}}`); GET /v1/models lists the one
model. Like vLLM it refuses another model's name (404), a missing or wrong bearer key
when it has one (401), and image parts when its model reads text only (400).

A test chooses the answer (`answer`, a function of the request), makes it stall (`stall`:
read the request, never answer, as a wedged GPU server does), answer late (`delay_s`) or
fail (`error_status`), and reads what it got (`requests`). Non-streaming only:
`stream: true` is refused."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True)
class ChatRequest:
    """One request as the double got it."""

    path: str
    headers: dict[str, str]  # names in lower case, as HTTP compares them
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    def user_text(self) -> str:
        """The text of the last user message (its text parts, joined)."""
        return " ".join(_parts(self._last_user(), "text"))

    def image_urls(self) -> list[str]:
        """The image URLs of the last user message."""
        return _parts(self._last_user(), "image_url")

    def _last_user(self) -> dict[str, Any]:
        users = [m for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else {}


Answer = Callable[[ChatRequest], str]


def embellish(request: ChatRequest) -> str:
    """The default answer: the user's text with detail added, as a rewrite would."""
    return f"{request.user_text()}, golden hour lighting, wide shot, highly detailed"


class OpenAIChatDouble:
    """A running double at `url` (the base URL, ending in /v1)."""

    def __init__(
        self,
        *,
        model: str = MODEL,
        answer: Answer = embellish,
        vision: bool = False,
        api_key: str | None = None,
    ) -> None:
        self.model = model
        self.answer = answer
        self.vision = vision
        self.api_key = api_key
        self.stall = False
        self.delay_s = 0.0
        self.error_status: int | None = None
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()
        self._released = threading.Event()  # set on stop: stalled requests end unanswered
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn (vLLM) serves

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self._send(404, _error("Not Found", "NotFoundError", None, 404))
                    return
                created = int(time.time())
                listed = {"id": double.model, "object": "model", "created": created}
                self._send(200, {"object": "list", "data": [{**listed, "owned_by": "vllm"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, _error("Invalid JSON body", "BadRequestError", None, 400))
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = ChatRequest(self.path, headers, body)
                with double._lock:
                    double.requests.append(request)
                # Both wait for the answer on the connection, ended early by stop.
                if double.stall or double._released.wait(double.delay_s):
                    double._released.wait()
                    self.close_connection = True
                    return
                status, answer = double._respond(request)
                self._send(status, answer)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @contextmanager
    def running(self) -> Iterator[OpenAIChatDouble]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._released.set()
            self._server.shutdown()
            self._server.server_close()

    def _respond(self, request: ChatRequest) -> tuple[int, dict[str, Any]]:
        """(status, body) for a request: an error as vLLM gives it, or the completion."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if self.error_status is not None:
            status = self.error_status
            return status, _error(HTTPStatus(status).phrase, "InternalServerError", None, status)
        return 200, self._completion(request)

    def _refusal(self, request: ChatRequest) -> tuple[int, dict[str, Any]] | None:
        body = request.body
        if request.path.rstrip("/") != "/v1/chat/completions":
            return 404, _error("Not Found", "NotFoundError", None, 404)
        given = request.headers.get("authorization")
        if self.api_key is not None and given != f"Bearer {self.api_key}":
            return 401, _error("Incorrect API key provided", "invalid_request_error", None, 401)
        if body.get("model") != self.model:
            message = f"The model `{body.get('model')}` does not exist."
            return 404, _error(message, "NotFoundError", "model", 404)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return 400, _error("messages: Field required", "BadRequestError", "messages", 400)
        if body.get("stream"):
            return 400, _error("the double does not stream", "BadRequestError", "stream", 400)
        if not self.vision and any(_parts(m, "image_url") for m in request.messages):
            message = f"{self.model} is not a multimodal model"
            return 400, _error(message, "BadRequestError", None, 400)
        return None

    def _completion(self, request: ChatRequest) -> dict[str, Any]:
        text = self.answer(request)
        limit = request.body.get("max_completion_tokens") or request.body.get("max_tokens")
        words = text.split(" ")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:  # a word a token, near enough
            text, finish = " ".join(words[:limit]), "length"
        prompt_tokens = sum(len(json.dumps(m).split()) for m in request.messages)
        completion_tokens = len(text.split())
        choice: dict[str, Any] = {
            "message": {"role": "assistant", "content": text, "refusal": None, "tool_calls": []},
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": None,
        }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": n, **choice} for n in range(int(request.body.get("n") or 1))],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": None,
            },
            "system_fingerprint": None,
            "prompt_logprobs": None,
        }


def _error(message: str, kind: str, param: str | None, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _parts(message: dict[str, Any], kind: str) -> list[str]:
    """The text or image URLs of a message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return [content] if kind == "text" else []
    found = []
    for part in content or []:
        if part.get("type") == kind == "text":
            found.append(str(part.get("text", "")))
        elif part.get("type") == kind == "image_url":
            found.append(str((part.get("image_url") or {}).get("url", "")))
    return found
