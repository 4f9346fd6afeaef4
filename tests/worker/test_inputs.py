"""Input images: fetched only from allowed hosts, within limits, and really images."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from stillhouse.schemas.worker_io import InputImage, WorkerOutput, parse_error
from stillhouse.workflows.binder import bind
from stillhouse.workflows.loader import WorkflowCatalog
from tests.worker.conftest import WorkerFactory


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


FILES = {
    "/photo.png": png(800, 600),
    "/huge.png": png(3000, 3000),
    "/notes.txt": b"not an image at all",
}


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def img2img(url: str) -> tuple[dict[str, Any], list[InputImage]]:
    workflow = WorkflowCatalog.load().get("sd15-img2img")
    bound = bind(workflow, {"prompt": "a red square", "image": "stillhouse/x/photo.png", "seed": 1})
    [source] = bound.inputs
    return bound.graph.model_dump(by_alias=True), [InputImage(name=source.name, url=url)]  # type: ignore[arg-type]


def test_an_allowed_image_reaches_comfyuis_input_folder(
    start_worker: WorkerFactory, image_host: str
) -> None:
    graph, inputs = img2img(f"{image_host}/photo.png")
    result = start_worker().run(graph, inputs=inputs)
    output = WorkerOutput.model_validate(result)
    # ComfyUI scaled the 800x600 upload to 0.4 megapixels (of 1024 x 1024 pixels; the VAE
    # then crops to multiples of 8): it did read our file.
    [image] = output.images
    assert (image.width, image.height) == (744, 560)


@pytest.mark.parametrize(
    ("path", "options", "expected"),
    [
        # 127.0.0.1 is allowed (the storage endpoint lives there); "localhost" is not.
        ("/photo.png", {"host": "localhost"}, "may not come from localhost"),
        ("/huge.png", {"max_input_bytes": 10_000}, "larger than"),
        ("/huge.png", {"max_input_pixels": 1000 * 1000}, "too many pixels"),
        ("/notes.txt", {}, "not an image"),
        ("/missing.png", {}, "not found"),
    ],
)
def test_refused_inputs_fail_without_retry(
    start_worker: WorkerFactory,
    image_host: str,
    path: str,
    options: dict[str, Any],
    expected: str,
) -> None:
    host = options.pop("host", None)
    base = image_host.replace("127.0.0.1", host) if host else image_host
    graph, inputs = img2img(f"{base}{path}")
    result = start_worker(**options).run(graph, inputs=inputs)
    error = parse_error(result["error"])
    assert error.type == "invalid_input" and not error.retryable
    assert expected in error.message
