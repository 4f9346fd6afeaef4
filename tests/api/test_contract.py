"""The API's contract under abuse: every refusal is a 4xx `{"detail": "<a sentence>"}`,
small and never repeating what was sent (NaN, 1e400, lone surrogates, wrong types,
malformed JSON, a 20 MB body sent whole or chunked); a retry with its Idempotency-Key is
answered before any limit; the OpenAPI document states the refusals and key schemes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.intake import REUSED_KEY
from stillhouse.services import Services
from tests.api.conftest import KEY
from tests.bot.conftest import bot_settings, empty_moderation, make_services

MARKER = "zebra"  # in every hostile body; no answer may contain it
SMALL = 400  # bytes an answer to any refusal stays under
JSON = {"Content-Type": "application/json"}
TWENTY_MB = 20 * 2**20

HOSTILE: list[tuple[str, bytes, int]] = [
    ("NaN seed", b'{"prompt": "zebra", "seed": NaN}', 400),
    ("Infinity seed", b'{"prompt": "zebra", "seed": Infinity}', 400),
    ("1e400 seed", b'{"prompt": "zebra", "seed": 1e400}', 400),
    ("NaN count", b'{"prompt": "zebra", "count": NaN}', 400),
    ("-1e400 in params", b'{"prompt": "zebra", "params": {"cfg": -1e400}}', 400),
    ("lone surrogate", b'{"prompt": "zebra \\ud800"}', 400),
    ("lone surrogate key", b'{"prompt": "zebra", "params": {"\\udc00": 1}}', 400),
    ("not UTF-8", b'{"prompt": "zebra \xff\xfe"}', 400),
    ("malformed", b'{"prompt": "zebra", ', 400),
    ("deep nesting", b'{"prompt": "zebra", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    ("count true", b'{"prompt": "zebra", "count": true}', 422),
    ("seed as a string", b'{"prompt": "zebra", "seed": "5"}', 422),
    ("seed as a float", b'{"prompt": "zebra", "seed": 5.0}', 422),
    ("prompt as a number", b'{"prompt": 5, "negative_prompt": "zebra"}', 422),
    ("a list as a parameter", b'{"prompt": "zebra", "params": {"steps": [1]}}', 422),
    ("null", b"null", 422),
    ("an array", b'["zebra"]', 422),
    ("a long unknown field", b'{"prompt": "x", "' + b"k" * 60 + b"zebra" * 2000 + b'": 1}', 422),
    (
        "a thousand parameters",
        json.dumps({"prompt": "zebra", "params": {f"zebra{i}": i for i in range(1000)}}).encode(),
        422,
    ),
    ("a prompt over 6000 characters", json.dumps({"prompt": "zebra" * 2000}).encode(), 422),
]


class Answer(Protocol):
    """What the test client answers (httpx's or httpx2's Response)."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def assert_problem(answer: Answer, status: int, what: str = "") -> str:
    """The documented refusal: `status`, exactly `{"detail": <str>}`, small, no echo."""
    assert answer.status_code == status, f"{what}: {answer.status_code} {answer.text[:300]}"
    body = answer.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), what
    assert len(answer.content) < SMALL, f"{what}: {len(answer.content)} bytes"
    assert MARKER not in answer.text, f"{what}: {answer.text}"
    return str(body["detail"])


def test_hostile_bodies_are_refused_in_the_documented_shape(
    client: TestClient, api_services: Services
) -> None:
    for what, body, status in HOSTILE:
        answer = client.post("/v1/generations", content=body, headers=JSON)
        assert_problem(answer, status, what)
    assert sum(api_services.queue.counts().values()) == 0


def test_a_refusal_names_the_field_and_what_is_wrong(client: TestClient) -> None:
    cases = [
        ({"prompt": "x", "seed": "5"}, "seed: must be a whole number."),
        ({"prompt": "x", "count": True}, "count: must be a whole number."),
        ({"seed": 5}, "prompt: is required."),
        ({"prompt": "x", "promt": "y"}, "promt: is not a field this request takes."),
        ({"prompt": "x", "params": {"cfg": None}}, "params.cfg: must be a string"),
        ({"prompt": "x", "aspect": "round"}, "aspect: must be 'square', 'portrait' or"),
    ]
    for body, says in cases:
        detail = assert_problem(client.post("/v1/generations", json=body), 422, says)
        assert detail.startswith(says), detail


def test_malformed_json_is_a_400_that_says_where(client: TestClient) -> None:
    answer = client.post("/v1/generations", content=b'{"prompt": "zebra" "seed": 1}', headers=JSON)
    detail = assert_problem(answer, 400)
    assert detail.startswith("body: is not valid JSON") and "line 1 column" in detail


def test_a_20_mb_body_is_refused_whole_or_chunked(client: TestClient) -> None:
    huge = b'{"prompt": "' + b"zebra" * (TWENTY_MB // 5) + b'"}'
    declared = client.post("/v1/generations", content=huge, headers=JSON)
    assert_problem(declared, 413, "with Content-Length")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 2**20):
            yield huge[start : start + 2**20]

    chunked = client.post("/v1/generations", content=chunks(), headers=JSON)
    assert "Transfer-Encoding" in chunked.request.headers
    assert_problem(chunked, 413, "chunked")
    # Not JSON, so read by FastAPI itself rather than checked first: the same answer.
    text = client.post("/v1/generations", content=chunks(), headers={"Content-Type": "text/plain"})
    assert_problem(text, 413, "chunked text")


def test_a_body_just_under_the_limit_is_read(client: TestClient) -> None:
    padded = b'{"prompt": "a lighthouse"' + b" " * 60_000 + b"}"
    assert client.post("/v1/generations", content=padded, headers=JSON).status_code == 202


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    live_api: tuple[str, int],
) -> None:
    head = (
        "POST /v1/generations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {TWENTY_MB}\r\n\r\n"
    )
    with socket.create_connection(live_api, timeout=10) as sock:
        sock.sendall(head.encode())  # and not one byte of the body
        status, body = read_answer(sock)
    assert status == 413 and list(json.loads(body)) == ["detail"]


def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    live_api: tuple[str, int],
) -> None:
    head = (
        "POST /v1/generations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 8192
    with socket.create_connection(live_api, timeout=10) as sock:
        sock.sendall(head.encode() + b'c\r\n{"prompt": "\r\n')
        for _ in range(9):  # 72 KiB, past the 64 KiB limit, and the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = read_answer(sock)
    assert status == 413 and list(json.loads(body)) == ["detail"]


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 answer with a Content-Length (the socket's
    timeout is the deadline)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        more = sock.recv(65536)
        assert more, "the server closed before the whole answer"
        body += more
    return int(lines[0].split()[1]), body


def test_uploads_have_their_own_larger_limit(client: TestClient) -> None:
    # Past the JSON limit, far under the upload one: the upload route itself answers.
    not_an_image = {"file": ("a.png", b"\0" * 100_000, "image/png")}
    answer = client.post("/v1/uploads", files=not_an_image)
    assert answer.status_code not in (413, 500) and list(answer.json()) == ["detail"]


def test_a_long_generation_id_is_not_echoed_at_length(client: TestClient) -> None:
    answer = client.get("/v1/generations/" + "z" * 5000)
    assert answer.status_code == 404 and len(answer.content) < SMALL


def test_a_retry_at_the_unfinished_limit_gets_its_request_back(client: TestClient) -> None:
    key = {"Idempotency-Key": "at-the-limit"}
    first = client.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=key)
    assert first.status_code == 202
    for _ in range(4):  # max_active_jobs is 5
        assert client.post("/v1/generations", json={"prompt": "a barn"}).status_code == 202
    assert_problem(client.post("/v1/generations", json={"prompt": "one more"}), 429)
    again = client.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=key)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]


def test_a_retry_past_the_rate_limit_gets_its_request_back(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    empty_moderation(engine)
    settings = bot_settings(
        database_url,
        tmp_path,
        {"per_minute": 2, "max_active_jobs": 50},
        api={"keys": f"alice:{KEY}"},
    )
    services = make_services(engine, settings)
    key = {"Idempotency-Key": "past-the-rate", "Authorization": f"Bearer {KEY}"}
    with TestClient(make_app(services), headers={"Authorization": f"Bearer {KEY}"}) as api:
        first = api.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=key)
        assert api.post("/v1/generations", json={"prompt": "a barn"}).status_code == 202
        limited = api.post("/v1/generations", json={"prompt": "one more"})
        assert_problem(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        again = api.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]


def test_the_same_key_with_another_body_is_a_409(
    client: TestClient, api_services: Services
) -> None:
    key = {"Idempotency-Key": "one-request"}
    assert client.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=key).is_success
    other = client.post("/v1/generations", json={"prompt": "zebra"}, headers=key)
    assert assert_problem(other, 409) == REUSED_KEY
    assert sum(api_services.queue.counts().values()) == 1


def test_without_keys_no_key_is_needed_and_keys_are_read_as_before(
    engine: Engine, database_url: str, tmp_path: Path, client: TestClient
) -> None:
    empty_moderation(engine)
    open_settings = bot_settings(database_url, tmp_path, {"per_minute": 100})
    with TestClient(make_app(make_services(engine, open_settings))) as anyone:
        assert anyone.post("/v1/generations", json={"prompt": "x"}).status_code == 202
    for given in (f"bearer {KEY}", f"BEARER   {KEY}  "):
        answer = client.get("/v1/workflows", headers={"Authorization": given})
        assert answer.status_code == 200, given
    refused = client.get("/v1/workflows", headers={"Authorization": f"Basic {KEY}"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"


def test_the_openapi_document_declares_every_refusal(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            declared = operation["responses"]
            assert {"400", "413"} <= set(declared), where
            if "security" in operation:
                assert "401" in declared, where
            for code, answer in declared.items():
                if code.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == problem, (where, code)
    create = spec["paths"]["/v1/generations"]["post"]["responses"]
    assert set(create) == {"202", "400", "401", "403", "409", "413", "422", "429", "503"}
    assert "Retry-After" in create["429"]["headers"]
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and schemas["Problem"]["required"] == ["detail"]


def test_the_openapi_document_declares_the_key_schemes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = {
        name: {k: v for k, v in scheme.items() if k != "description"}
        for name, scheme in spec["components"]["securitySchemes"].items()
    }
    assert schemes == {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    keyed = [(path, method) for path, ops in spec["paths"].items() for method in ops]
    for path, method in keyed:
        security = spec["paths"][path][method].get("security")
        if path == "/v1/health":
            assert security is None
        else:  # either scheme will do
            assert security == [{"bearer": []}, {"apiKey": []}], (method, path)
