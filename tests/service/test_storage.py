"""Storage round trips on moto's S3 server and on a local folder, URLs fetched over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import aiohttp
import pytest

from stillhouse.config import StorageSettings
from stillhouse.errors import InvalidKey, ObjectNotFound, StorageUnavailable
from stillhouse.storage import Storage, StoredObject, new_key
from stillhouse.storage.local import LocalStorage
from stillhouse.storage.local_http import make_wsgi_app
from stillhouse.storage.over_http import ObjectsOverHttp
from stillhouse.storage.s3 import S3Storage
from tests.doubles.s3_outage import S3Outage
from tests.support import free_port

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_storage(tmp_path: Path) -> Iterator[LocalStorage]:
    """A local folder whose signed URLs are served by the WSGI app on a real port."""
    port = free_port()
    storage = LocalStorage(
        tmp_path / "images",
        StorageSettings(public_base_url=f"http://127.0.0.1:{port}/files"),
    )
    server: WSGIServer = make_server(
        "127.0.0.1", port, make_wsgi_app(storage), handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield storage
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(params=["s3", "local"])
def storage(request: pytest.FixtureRequest) -> Storage:
    if request.param == "s3":
        return S3Storage(request.getfixturevalue("s3_settings"))
    return request.getfixturevalue("local_storage")  # type: ignore[no-any-return]


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own URL
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def test_round_trip_through_a_url_fetched_over_http(storage: Storage) -> None:
    key = new_key("stillhouse/", "job123", "png")
    stored = storage.put(key, PNG, "image/png")
    assert stored.bytes == len(PNG) and stored.key == key and stored.bucket == storage.bucket
    assert storage.get(key) == PNG
    assert storage.content_type(key) == "image/png"
    status, body, content_type = fetch(storage.url(key, expires_s=120))
    assert (status, body, content_type) == (200, PNG, "image/png")
    storage.delete(key)
    with pytest.raises(ObjectNotFound):
        storage.get(key)
    storage.delete(key)  # deleting twice is fine


def test_sha256_matches_the_bytes(storage: Storage) -> None:
    import hashlib

    stored = storage.put(new_key("p/", "j", "png"), PNG, "image/png")
    assert stored.sha256 == hashlib.sha256(PNG).hexdigest()


def test_keys_nobody_can_guess() -> None:
    keys = {new_key("stillhouse/", "job123", "png") for _ in range(1000)}
    assert len(keys) == 1000
    tail = next(iter(keys)).rsplit("/", 1)[1]
    assert len(tail.removesuffix(".png")) >= 22  # 128 random bits, URL-safe


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "/abs/key.png", "a/../../b.png", "a//b.png", "a/./b", "a b.png", ""]
)
def test_keys_that_could_escape_are_refused(storage: Storage, bad: str) -> None:
    with pytest.raises(InvalidKey):
        storage.put(bad, PNG, "image/png")
    with pytest.raises(InvalidKey):
        storage.url(bad)


def test_local_url_refuses_tampering_and_expiry(local_storage: LocalStorage) -> None:
    key = new_key("p/", "job", "png")
    local_storage.put(key, PNG, "image/png")
    other = new_key("p/", "job", "png")
    local_storage.put(other, b"other user's image", "image/png")
    good = local_storage.url(key)
    assert fetch(good)[0] == 200
    assert fetch(good.replace(key, other))[0] == 403
    assert fetch(good.replace("signature=", "signature=0"))[0] == 403
    assert fetch(local_storage.url(key, expires_s=-10))[0] == 403


def test_local_signing_key_is_shared_by_processes_on_one_folder(tmp_path: Path) -> None:
    settings = StorageSettings(public_base_url="http://127.0.0.1:1/files")
    first = LocalStorage(tmp_path, settings)
    second = LocalStorage(tmp_path, settings)
    key = new_key("p/", "job", "png")
    first.put(key, PNG, "image/png")
    url = first.url(key)
    query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
    assert second.open_signed(key, query["expires"], query["signature"]) == (PNG, "image/png")
    assert (tmp_path / ".signing-key").stat().st_mode & 0o777 == 0o600


def test_settings_pick_the_backend(tmp_path: Path, s3_settings: StorageSettings) -> None:
    from stillhouse.config import make_settings
    from stillhouse.storage import make_storage

    local = make_storage(make_settings(data_dir=tmp_path))
    assert isinstance(local, LocalStorage) and (tmp_path / "images").is_dir()
    s3 = make_storage(make_settings(data_dir=tmp_path, storage=s3_settings))
    assert isinstance(s3, S3Storage) and s3.bucket == s3_settings.s3_bucket


def test_objects_over_http_round_trip_and_say_what_is_missing(storage: Storage) -> None:
    key = new_key("stillhouse/", "job124", "png")
    objects = ObjectsOverHttp(storage)

    async def round_trip() -> tuple[StoredObject, bytes, bytes]:
        async with aiohttp.ClientSession() as session:
            stored = await objects.put(session, key, PNG, "image/png")
            first, again = await asyncio.gather(
                objects.get(session, key), objects.get(session, key)
            )
            with pytest.raises(ObjectNotFound):
                await objects.get(session, new_key("stillhouse/", "job124", "png"))
            with pytest.raises(InvalidKey):
                await objects.get(session, "../escape.png")
            with pytest.raises(InvalidKey):
                await objects.put(session, "../escape.png", PNG, "image/png")
            large = PNG * 40  # 400 KB: hashed on a thread
            big = await objects.put(session, key + ".large", large, "image/png")
            assert big.bytes == len(large) and await objects.get(session, big.key) == large
            return stored, first, again

    stored, first, again = asyncio.run(round_trip())
    assert (first, again) == (PNG, PNG)
    assert stored == storage.put(
        new_key("stillhouse/", "job124", "png"), PNG, "image/png"
    ).model_copy(update={"key": key}), "described as the store's own put describes it"
    assert storage.get(key) == PNG and storage.content_type(key) == "image/png"


def test_objects_over_http_report_a_store_that_refuses_as_unavailable(
    moto_endpoint: str, s3_settings: StorageSettings
) -> None:
    key = new_key("stillhouse/", "job125", "png")
    S3Storage(s3_settings).put(key, PNG, "image/png")
    outage = S3Outage(moto_endpoint).start()
    try:
        through = S3Storage(s3_settings.model_copy(update={"s3_endpoint_url": outage.url}))
        objects = ObjectsOverHttp(through)

        async def read() -> bytes:
            async with aiohttp.ClientSession() as session:
                outage.down = True
                with pytest.raises(StorageUnavailable):
                    await objects.get(session, key)
                with pytest.raises(StorageUnavailable):
                    await objects.put(session, key + ".2", PNG, "image/png")
                outage.down = False
                return await objects.get(session, key)

        assert asyncio.run(read()) == PNG
        assert outage.refused == 2
    finally:
        outage.stop()


def test_a_put_carries_the_md5_of_its_bytes_for_s3_to_check(s3_settings: StorageSettings) -> None:
    """S3 refuses a body whose MD5 differs from Content-MD5 (moto does not check it, so
    what is checked here is the header the PUT carries)."""
    key = new_key("stillhouse/", "job126", "png")
    objects = ObjectsOverHttp(S3Storage(s3_settings))
    sent: list[dict[str, str]] = []

    async def on_request_start(
        _session: aiohttp.ClientSession, _ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        sent.append(dict(params.headers))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)

    async def put() -> None:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            await objects.put(session, key, PNG, "image/png")

    asyncio.run(put())
    expected = base64.b64encode(hashlib.md5(PNG).digest()).decode()  # noqa: S324
    assert [(h["Content-MD5"], h["Content-Type"]) for h in sent] == [(expected, "image/png")]
