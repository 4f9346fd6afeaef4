"""`stillhouse up` from any folder, as an outside tester runs it: the shipped workflows come
with the package, a restart right after Ctrl+C takes the same port at once, `--port 0`
shows and serves the real port, and an operator's own folder adds, replaces and reports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from stillhouse.commands.up import workflow_lines
from stillhouse.workflows.loader import WorkflowCatalog, shipped_workflows
from tests.support import free_port, wait_until

SHIPPED = Path(str(shipped_workflows()))
SHIPPED_NAMES = {p.stem for p in SHIPPED.glob("*.toml")}
# What GET /v1/workflows offers (text to image, and image to image for a picture): the
# others serve the buttons under a result.
SHIPPED_GENERATE = {
    p.stem
    for p in SHIPPED.glob("*.toml")
    if tomllib.loads(p.read_text()).get("purpose", "generate") in ("generate", "img2img")
}
# A cold start (imports, migrations) takes seconds on a busy machine; the failure this
# guards against lasted TIME_WAIT's 60 s, so a bound well below that tells them apart.
START_S = 25.0
API_LINE = re.compile(r"^  api +http://127\.0\.0\.1:(\d+)/v1 ", re.MULTILINE)


@dataclass
class Up:
    """One `stillhouse up` process and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def banner(self) -> str:
        """The output once the banner is out; fails at once if the process ended."""
        wait_until(
            lambda: "Stop with Ctrl+C." in self.output() or self.process.poll() is not None,
            START_S,
            0.05,
            what="the banner of stillhouse up",
        )
        assert self.process.poll() is None, self.output()
        return self.output()

    def base(self) -> str:
        match = API_LINE.search(self.banner())
        assert match, self.output()
        return f"http://127.0.0.1:{match.group(1)}"

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)


def start(cwd: Path, logs: Path, *args: str, **settings: str) -> Up:
    """`stillhouse up ARGS` run in `cwd`, with no STILLHOUSE_ setting but `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "COMFYUI_"))}
    env.pop("DISCORD_TOKEN", None)
    env.update({f"STILLHOUSE_{k.upper()}": v for k, v in settings.items()})
    logs.mkdir(exist_ok=True)
    log = logs / f"up-{len(list(logs.iterdir()))}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("stillhouse")), "up", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Up(process, log)


@pytest.fixture
def anywhere(tmp_path: Path) -> Path:
    """An empty folder outside the repository to run `stillhouse up` in."""
    folder = tmp_path / "anywhere"
    folder.mkdir()
    return folder


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"


def generate(base: str, **body: Any) -> dict[str, Any]:
    """POST a generation and poll until it finishes; the finished view."""
    answer = requests.post(f"{base}/v1/generations", json=body, timeout=10)
    assert answer.status_code == 202, answer.text

    def finished() -> dict[str, Any] | None:
        view = requests.get(f"{base}/v1/generations/{answer.json()['id']}", timeout=10).json()
        return view if view["status"] in ("succeeded", "failed", "cancelled") else None

    view = wait_until(finished, 30, 0.1, what="the generation to finish")
    assert view["status"] == "succeeded", view
    return dict(view)


def fetch_png(url: str) -> None:
    image = requests.get(url, timeout=10)
    assert image.status_code == 200, image.text
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")


def listed_workflows(base: str) -> dict[str, str]:
    """GET /v1/workflows: name -> title."""
    answer = requests.get(f"{base}/v1/workflows", timeout=10)
    assert answer.status_code == 200, answer.text
    return {w["name"]: w["title"] for w in answer.json()}


def server_side_time_wait(port: int) -> bool:
    """Whether a connection whose local end is `port` is in TIME_WAIT (Linux's /proc)."""
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "06" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def test_up_in_an_empty_folder_serves_every_shipped_workflow_and_an_image(
    anywhere: Path, logs: Path
) -> None:
    up = start(anywhere, logs, "--port", str(free_port()))
    try:
        base = up.base()
        assert set(listed_workflows(base)) == SHIPPED_GENERATE
        view = generate(base, prompt="a lighthouse at dawn", seed=7)
        [image] = view["images"]
        fetch_png(image["url"])
    finally:
        assert up.stop() == 0, up.output()
    assert f"workflows  {len(SHIPPED_NAMES)} loaded: {len(SHIPPED_NAMES)} shipped" in up.output()
    assert (anywhere / ".stillhouse").is_dir(), "the data folder is made where it runs"


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads TIME_WAIT from /proc")
def test_a_restart_right_after_ctrl_c_takes_the_same_port_at_once(
    anywhere: Path, logs: Path
) -> None:
    port = free_port()
    first = start(anywhere, logs, "--port", str(port))
    client = requests.Session()
    try:
        base = first.base()
        # A kept-alive connection is still open at Ctrl-C: the server closes it first,
        # so its end of the port is left in TIME_WAIT, as after any real use.
        assert client.get(f"{base}/v1/health", timeout=10).ok
    finally:
        assert first.stop() == 0, first.output()
        client.close()
    wait_until(lambda: server_side_time_wait(port), 10, what=f"TIME_WAIT on port {port}")

    began = time.monotonic()
    second = start(anywhere, logs, "--port", str(port))
    try:
        assert second.base() == base
        assert requests.get(f"{base}/v1/health", timeout=10).ok
        assert time.monotonic() - began < START_S
        assert server_side_time_wait(port), "the restart bound beside a TIME_WAIT connection"
    finally:
        assert second.stop() == 0, second.output()
    assert "is taken" not in second.output()


def test_a_port_another_process_listens_on_is_refused_at_once(anywhere: Path, logs: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = start(anywhere, logs, "--port", str(port))
        assert up.process.wait(START_S) == 1
    assert f"port {port} on 127.0.0.1 is taken" in up.output()


def test_port_zero_shows_and_serves_the_real_port_in_the_banner_and_image_urls(
    anywhere: Path, logs: Path
) -> None:
    up = start(anywhere, logs, "--port", "0")
    try:
        base = up.base()
        port = int(base.rsplit(":", 1)[1])
        assert port > 0
        assert f"playground {base}/" in up.output() and ":0/" not in up.output()
        [image] = generate(base, prompt="a lighthouse at dawn")["images"]
        assert image["url"].startswith(f"{base}/files/")
        fetch_png(image["url"])
    finally:
        assert up.stop() == 0, up.output()


def test_your_folder_adds_and_replaces_workflows_and_its_broken_file_is_in_the_banner(
    anywhere: Path, logs: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "my-workflows"
    mine.mkdir()
    for shipped, name, title in [
        ("sd15-txt2img", "sd15-txt2img", "Our house style"),
        ("sd15-txt2img", "house-lighthouse", "Lighthouses only"),
    ]:
        manifest = (SHIPPED / f"{shipped}.toml").read_text()
        original = tomllib.loads(manifest)["title"]
        (mine / f"{name}.toml").write_text(manifest.replace(original, title, 1))
        shutil.copy(SHIPPED / f"{shipped}.json", mine / f"{name}.json")
    (mine / "broken.toml").write_text('title = "unfinished')

    up = start(anywhere, logs, "--port", "0", workflows__dir=str(mine))
    try:
        base = up.base()
        listed = listed_workflows(base)
        assert set(listed) == SHIPPED_GENERATE | {"house-lighthouse"}
        assert listed["sd15-txt2img"] == "Our house style"
        shipped_sdxl = tomllib.loads((SHIPPED / "sdxl-txt2img.toml").read_text())
        assert listed["sdxl-txt2img"] == shipped_sdxl["title"]
        generate(base, prompt="a lighthouse", workflow="house-lighthouse")
    finally:
        assert up.stop() == 0, up.output()
    banner = up.output()
    assert (
        f"workflows  {len(SHIPPED_NAMES) + 1} loaded: {len(SHIPPED_NAMES) - 1} shipped, "
        f"2 from {mine}, replacing the shipped sd15-txt2img"
    ) in banner
    assert f"  problem    {mine / 'broken.toml'}: not valid TOML" in banner


def test_the_banner_says_loudly_when_no_workflow_loaded() -> None:
    nothing = WorkflowCatalog(problems=["/srv/flows: workflows folder not found"])
    [loaded, problem] = workflow_lines(nothing)
    assert "NONE LOADED" in loaded and "every request will fail" in loaded
    assert problem == "  problem    /srv/flows: workflows folder not found"
