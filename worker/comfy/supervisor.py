"""Keep a ComfyUI running: start it (a command, a ComfyUI folder or a comfy-cli
workspace) or attach to one at a URL; wait for it as long as its process lives, fail fast
when it died, start it again after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from stillhouse.config import WorkerSettings
from stillhouse.processes import die_with_parent
from worker.comfy.client import ComfyClient
from worker.errors import comfy_unavailable

log = logging.getLogger(__name__)
READY_POLL_S = 0.2
LOG_TAIL_BYTES = 4000


class Supervisor:
    """One ComfyUI for this worker; `ensure_ready()` before every job."""

    def __init__(self, settings: WorkerSettings, log_dir: Path) -> None:
        self.settings = settings
        self.url = settings.comfy_url.rstrip("/")
        self.command = launch_command(settings)
        self.log_path = log_dir / "comfyui.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.version: str | None = None
        self.starts = 0

    @property
    def attached(self) -> bool:
        """True when this worker only connects to a ComfyUI someone else runs."""
        return self.command is None

    def is_alive(self) -> bool:
        """Whether ComfyUI's process still runs (always True when attached)."""
        return self.attached or (self.process is not None and self.process.poll() is None)

    def boot(self) -> None:
        """Start ComfyUI now (at worker start) so its start overlaps the wait for a job."""
        if not self.attached and not self.is_alive():
            self._start()

    async def ensure_ready(self, session: aiohttp.ClientSession) -> float:
        """Start ComfyUI if it is not running, wait until it answers; seconds spent."""
        began = time.monotonic()
        if not self.attached and not self.is_alive():
            self._start()
        await self._wait_ready(ComfyClient(session, self.url))
        return time.monotonic() - began

    def _start(self) -> None:
        assert self.command is not None
        if self.process is not None:
            log.warning(
                "ComfyUI exited (code %s); starting it again",
                self.process.returncode,
                extra={"action": "comfy.restart"},
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as sink:
            self.process = subprocess.Popen(  # noqa: S603 - the operator's own command
                self.command,
                cwd=self.settings.comfy_dir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() signals its whole group
                preexec_fn=die_with_parent(),  # called from the main thread
            )
        self.starts += 1
        log.info("ComfyUI starting", extra={"action": "comfy.start", "pid": self.process.pid})

    async def _wait_ready(self, client: ComfyClient) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while True:
            try:
                stats = await client.system_stats()
                self.version = str(stats.get("system", {}).get("comfyui_version") or "") or None
                return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if not self.is_alive():
                raise comfy_unavailable(f"ComfyUI exited while starting: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise comfy_unavailable(
                    f"ComfyUI did not answer at {self.url} within "
                    f"{self.settings.startup_timeout_s:g} s"
                )
            await asyncio.sleep(READY_POLL_S)

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(max(0, self.log_path.stat().st_size - LOG_TAIL_BYTES))
                lines = handle.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """Stop the ComfyUI this supervisor started (its whole process group)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def launch_command(settings: WorkerSettings) -> list[str] | None:
    """The command that starts ComfyUI, or None to attach to `comfy_url`."""
    parts = urlsplit(settings.comfy_url)
    if settings.comfy_command.strip():
        # "{port}" lets several workers on one host share a command (the local backend).
        port = str(parts.port or 8188)
        return [arg.replace("{port}", port) for arg in shlex.split(settings.comfy_command)]
    listen = ["--listen", parts.hostname or "127.0.0.1", "--port", str(parts.port or 8188)]
    extra = shlex.split(settings.comfy_args)
    if settings.comfy_dir is not None:
        return [sys.executable, str(settings.comfy_dir / "main.py"), *listen, *extra]
    if settings.comfy_workspace is not None:
        return [
            "comfy",
            "--workspace",
            str(settings.comfy_workspace),
            "--skip-prompt",
            "launch",
            "--",
            *listen,
            *extra,
        ]
    return None
