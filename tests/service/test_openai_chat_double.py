"""The OpenAI-compatible endpoint's double speaks OpenAI's chat wire format: the
`chat.completion` object and its fields, `length` when max_tokens cuts the answer, errors
in OpenAI's `{"error": {...}}` shape for what vLLM refuses, and the model list. When the
`openai` package is installed, its client is driven against the double too."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.doubles.openai_chat import OpenAIChatDouble


@pytest.fixture
def client(openai_chat: OpenAIChatDouble) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=openai_chat.url, timeout=5) as http:
        yield http


def ask(client: httpx.Client, model: str, content: object, **options: object) -> httpx.Response:
    messages = [{"role": "user", "content": content}]
    return client.post("/chat/completions", json={"model": model, "messages": messages, **options})


def test_a_completion_has_every_field_of_openais_chat_completion(
    client: httpx.Client, openai_chat: OpenAIChatDouble
) -> None:
    openai_chat.answer = lambda request: f"echo: {request.user_text()}"
    answer = ask(client, openai_chat.model, "a lighthouse")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert abs(body["created"] - time.time()) < 60 and body["model"] == openai_chat.model
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "echo: a lighthouse"
    usage = body["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_cuts_the_answer_and_says_length(
    client: httpx.Client, openai_chat: OpenAIChatDouble
) -> None:
    body = ask(client, openai_chat.model, "a lighthouse", max_tokens=2).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "a lighthouse,"


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ("another model", 404, "model"),
        ("an image to a text-only model", 400, None),
        ("no bearer key", 401, None),
        ("the endpoint failing", 503, None),
    ],
)
def test_refusals_come_in_openais_error_shape(
    client: httpx.Client, openai_chat: OpenAIChatDouble, change: str, status: int, param: str
) -> None:
    model, content = openai_chat.model, "a lighthouse"
    if change == "another model":
        model = "someone/else"
    elif change == "an image to a text-only model":
        content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]
    elif change == "no bearer key":
        openai_chat.api_key = "sk-test-key"
    else:
        openai_chat.error_status = 503
    answer = ask(client, model, content)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status and error["param"] == param and error["message"]


def test_a_vision_model_takes_image_parts_and_the_double_records_them(
    client: httpx.Client, openai_chat: OpenAIChatDouble
) -> None:
    openai_chat.vision = True
    parts = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "https://cdn.example/a.png"}},
    ]
    assert ask(client, openai_chat.model, parts).status_code == 200
    [got] = openai_chat.requests
    assert got.user_text() == "describe" and got.image_urls() == ["https://cdn.example/a.png"]


def test_the_model_list_names_the_one_model(
    client: httpx.Client, openai_chat: OpenAIChatDouble
) -> None:
    listed = client.get("/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == [openai_chat.model]


def test_the_openai_client_library_reads_the_doubles_answers(
    openai_chat: OpenAIChatDouble,
) -> None:
    openai = pytest.importorskip("openai")
    openai_chat.api_key = "sk-test-key"
    with openai.OpenAI(base_url=openai_chat.url, api_key="sk-test-key", max_retries=0) as sdk:
        completion = sdk.chat.completions.create(
            model=openai_chat.model, messages=[{"role": "user", "content": "a lighthouse"}]
        )
        assert completion.object == "chat.completion"
        assert completion.choices[0].message.content.startswith("a lighthouse, ")
        assert completion.usage is not None and completion.usage.total_tokens > 0
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(
                model="someone/else", messages=[{"role": "user", "content": "x"}]
            )
    assert openai_chat.requests[0].headers["authorization"] == "Bearer sk-test-key"
