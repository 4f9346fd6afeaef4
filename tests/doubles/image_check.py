"""The image check's double: the HTTP contract stillhouse.safety.HttpImageCheck speaks
(POST the image's bytes, answer {"score": 0..1}), with a verdict a test controls by colour:
an image whose top-left pixel is pure red scores 0.97, any other 0.02. `down` makes it
answer 503, as a classifier service that is restarting does."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

RED = (255, 0, 0)


class ImageCheckDouble:
    """A running double; `checked` counts the images it answered for."""

    def __init__(self) -> None:
        self.down = False
        self.checked = 0
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if double.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                pixel = Image.open(io.BytesIO(body)).convert("RGB").getpixel((0, 0))
                double.checked += 1
                answer = json.dumps({"score": 0.97 if pixel == RED else 0.02}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/check"

    @contextmanager
    def running(self) -> Iterator[ImageCheckDouble]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
