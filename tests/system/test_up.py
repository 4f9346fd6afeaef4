"""`stillhouse up` as the README runs it: a fresh data folder, no ComfyUI (preview mode),
a request made with curl against the API, and the image that comes back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-s", "--max-time", "10", *args], capture_output=True, check=False
    )


def test_up_answers_a_curl_request_with_an_image_in_preview_mode(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "COMFYUI_"))}
    env.pop("DISCORD_TOKEN", None)
    env["STILLHOUSE_DATA_DIR"] = str(tmp_path / "data")
    stillhouse = Path(sys.executable).with_name("stillhouse")
    up = subprocess.Popen(
        [str(stillhouse), "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: curl(f"{base}/v1/health").stdout == b'{"status":"ok"}', 60, 0.2)
        created = curl(
            "-X",
            "POST",
            f"{base}/v1/generations",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"prompt": "a lighthouse at dawn", "seed": 7}',
        )
        generation = json.loads(created.stdout)
        assert generation["status"] == "queued"

        def finished() -> dict[str, object] | None:
            view = json.loads(curl(f"{base}/v1/generations/{generation['id']}").stdout)
            return view if view["status"] in ("succeeded", "failed") else None

        view = wait_until(finished, 30, 0.2, what="the generation to finish")
        assert view["status"] == "succeeded", view
        [image] = view["images"]  # type: ignore[misc]
        target = tmp_path / "image.png"
        assert curl("-o", str(target), "-w", "%{http_code}", image["url"]).stdout == b"200"
        with Image.open(target) as png:
            assert png.format == "PNG" and png.size == (512, 512)
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=30)[0].decode()
    assert up.returncode == 0, output
    assert "PREVIEW MODE" in output and f"playground http://127.0.0.1:{port}/" in output
    assert "Stop with Ctrl+C" in output
