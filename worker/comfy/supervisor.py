"""Keep a ComfyUI running: start it (a command, a ComfyUI folder with its own Python, or a
comfy-cli workspace) or attach to one at a URL; wait for it within the job's deadline;
watch it while a job runs; start it again after a crash, or after it stopped answering.

A ComfyUI that will not start for a reason another try cannot fix (its Python lacks a
module, its folder has no main.py) fails the job as `comfy_misconfigured`, not retryable,
naming the setting to fix. One that died or stopped answering fails it as
`comfy_unavailable`, retryable, within `comfy_dead_after_s`.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import aiohttp

from stillhouse.config import WorkerSettings
from stillhouse.processes import die_with_parent
from worker.comfy.client import ComfyClient
from worker.errors import JobFailure, comfy_unavailable

log = logging.getLogger(__name__)
READY_POLL_S = 0.2
LOG_TAIL_LINES = 40
LOG_BYTES, LOG_BACKUPS = 10 * 2**20, 2
PROBE_TIMEOUT_S = 2.0
# A ComfyUI this worker runs, heard from this recently (a probe, a finished prompt), is
# not probed again before the next job: back-to-back jobs skip a round trip. A dead
# process is still noticed (without asking it); a frozen one by the job's watchdog.
FRESH_S = 1.0
# What a ComfyUI prints when it cannot start as configured (a retry would do the same).
MISCONFIGURED = re.compile(
    r"ModuleNotFoundError|No module named|ImportError|can't open file|SyntaxError|"
    r"error: unrecognized arguments|No such file or directory"
)


class Supervisor:
    """One ComfyUI for this worker; `ensure_ready()` before every job, `watch()` during."""

    def __init__(self, settings: WorkerSettings, log_dir: Path) -> None:
        self.settings = settings
        self.url = settings.comfy_url.rstrip("/")
        self.command = launch_command(settings)
        self.log_path = log_dir / "comfyui.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.version: str | None = None
        self.starts = 0
        self.healthy = True  # False once ComfyUI stopped answering (attached: until it does)
        self.heard_at: float | None = None  # time.monotonic() ComfyUI last answered
        self._lines: list[str] = []
        self._log_thread: threading.Thread | None = None

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

    async def ensure_ready(self, session: aiohttp.ClientSession, deadline: float) -> float:
        """Start ComfyUI if it is not running and wait until it answers, at most until
        the job's `deadline` (time.monotonic()); seconds spent."""
        began = time.monotonic()
        if not self.attached and not self.is_alive():
            self._start()
        elif self._fresh(began):
            return 0.0
        await self._wait_ready(ComfyClient(session, self.url), deadline)
        return time.monotonic() - began

    def _fresh(self, now: float) -> bool:
        heard = self.heard_at
        return not self.attached and self.healthy and heard is not None and now - heard < FRESH_S

    def heard_from(self) -> None:
        """ComfyUI just answered (a prompt of ours ran to its end)."""
        self.heard_at = time.monotonic()

    async def watch(self, session: aiohttp.ClientSession) -> NoReturn:
        """While a job runs: raise comfy_unavailable once ComfyUI's process is gone or it
        has not answered a cheap probe for `comfy_dead_after_s` (a frozen one is then
        stopped, so the next job starts a fresh one)."""
        client = ComfyClient(session, self.url)
        answered = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.comfy_probe_interval_s)
            if not self.is_alive():
                raise comfy_unavailable("ComfyUI stopped while running the prompt")
            if await self._answers(client):
                answered = self.heard_at = time.monotonic()
                self.healthy = True
                continue
            silent = time.monotonic() - answered
            if silent >= self.settings.comfy_dead_after_s:
                self.healthy = False
                log.error(
                    "ComfyUI has not answered for %.0f s",
                    silent,
                    extra={"action": "comfy.unresponsive", "attached": self.attached},
                )
                if not self.attached:
                    self.kill()  # frozen: the next job starts a fresh one
                raise comfy_unavailable(f"ComfyUI stopped answering ({silent:.0f} s)")

    async def _answers(self, client: ComfyClient) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await client.system_stats()
            return True
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    def _start(self) -> None:
        assert self.command is not None
        if self.process is not None:
            log.warning(
                "ComfyUI exited (code %s); starting it again",
                self.process.returncode,
                extra={"action": "comfy.restart"},
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.process = subprocess.Popen(  # noqa: S603 - the operator's own command
                self.command,
                cwd=self.settings.comfy_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() signals its whole group
                preexec_fn=die_with_parent(),  # called from the main thread
            )
        except OSError as exc:  # no such program: a setting points nowhere
            raise misconfigured(f"ComfyUI could not be started: {exc}") from None
        self._lines = []
        self._log_thread = threading.Thread(
            target=self._copy_log, args=(self.process,), daemon=True, name="comfyui-log"
        )
        self._log_thread.start()
        self.starts += 1
        log.info("ComfyUI starting", extra={"action": "comfy.start", "pid": self.process.pid})

    def _copy_log(self, process: subprocess.Popen[bytes]) -> None:
        """ComfyUI's output into a rotating log (and its last lines kept for errors)."""
        handler = logging.handlers.RotatingFileHandler(
            self.log_path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                self._lines = [*self._lines[-LOG_TAIL_LINES:], line]
                handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        finally:
            handler.close()
            process.stdout.close()

    async def _wait_ready(self, client: ComfyClient, deadline: float) -> None:
        limit = min(deadline, time.monotonic() + self.settings.startup_timeout_s)
        while True:
            try:
                wait = max(0.1, min(PROBE_TIMEOUT_S, limit - time.monotonic()))
                async with asyncio.timeout(wait):
                    stats = await client.system_stats()
                self.version = str(stats.get("system", {}).get("comfyui_version") or "") or None
                self.healthy = True
                self.heard_at = time.monotonic()
                return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if not self.is_alive():
                raise await self._start_failure()
            if time.monotonic() >= limit:
                self.healthy = False
                within = (
                    "before the job's time ran out"
                    if limit >= deadline
                    else f"within {self.settings.startup_timeout_s:g} s"
                )
                raise comfy_unavailable(f"ComfyUI did not answer at {self.url} {within}")
            await asyncio.sleep(READY_POLL_S)

    async def _start_failure(self) -> JobFailure:
        """Why ComfyUI exited while starting: a setting to fix, or something to retry."""
        if self._log_thread is not None:  # its last lines say why; the pipe is closing
            await asyncio.to_thread(self._log_thread.join, 2)
        tail = "\n".join(self._lines[-5:]) or "no output"
        if MISCONFIGURED.search(tail) or (self.process and self.process.returncode in (2, 127)):
            return misconfigured(
                f"ComfyUI could not start as configured: {self._lines[-1] if self._lines else tail}"
            )
        return comfy_unavailable(f"ComfyUI exited while starting: {tail.splitlines()[-1]}")

    def kill(self) -> None:
        """SIGKILL the ComfyUI this supervisor started (a frozen one ignores SIGTERM)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the ComfyUI this supervisor started (its whole process group)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def misconfigured(message: str) -> JobFailure:
    """ComfyUI cannot start as configured: another try would fail the same way."""
    hint = " (check STILLHOUSE_WORKER__COMFY_PYTHON, __COMFY_DIR, __COMFY_COMMAND and __COMFY_ARGS)"
    return JobFailure("comfy_misconfigured", message + hint, retryable=False)


def comfy_python(settings: WorkerSettings) -> str:
    """The Python that runs ComfyUI: the configured one, the folder's own virtualenv,
    or (last) this worker's."""
    if settings.comfy_python is not None:
        return str(settings.comfy_python)
    if settings.comfy_dir is not None:
        for venv in ("venv", ".venv"):
            candidate = settings.comfy_dir / venv / "bin" / "python"
            if candidate.exists():
                return str(candidate)
    return sys.executable


def launch_command(settings: WorkerSettings) -> list[str] | None:
    """The command that starts ComfyUI, or None to attach to `comfy_url`. COMFY_ARGS
    (by default --disable-metadata) go to every ComfyUI this worker starts."""
    parts = urlsplit(settings.comfy_url)
    extra = shlex.split(settings.comfy_args)
    if settings.comfy_command.strip():
        # "{port}" lets several workers on one host share a command (the local backend).
        port = str(parts.port or 8188)
        command = [arg.replace("{port}", port) for arg in shlex.split(settings.comfy_command)]
        return [*command, *extra]
    listen = ["--listen", parts.hostname or "127.0.0.1", "--port", str(parts.port or 8188)]
    if settings.comfy_dir is not None:
        return [comfy_python(settings), str(settings.comfy_dir / "main.py"), *listen, *extra]
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
