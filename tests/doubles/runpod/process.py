"""The RunPod double as a child process of a test (`python -m tests.doubles.runpod`), with
what a test needs to drive it from outside: start, kill -9, restart on the same port and
state file, and the `/_test/…` routes (jobs, executions, kills, requests, planned faults).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class RunPodDoubleProcess:
    """`start()` (again after `kill()` to restart it on the same port and state file)."""

    state_file: Path
    port: int = field(default_factory=free_port)
    endpoint_id: str = "stillhouse-test"
    api_key: str | None = None
    simulated: tuple[int, float, dict[str, Any]] | None = None  # count, service_s, output
    webhooks: bool = False
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What `STILLHOUSE_RUNPOD__BASE_URL` points at."""
        return f"{self.root}/v2"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "tests.doubles.runpod", "--port", str(self.port)]
        command += ["--state-file", str(self.state_file), "--endpoint-id", self.endpoint_id]
        if self.api_key is not None:
            command += ["--api-key", self.api_key]
        if self.simulated is not None:
            count, service_s, output = self.simulated
            output_file = self.state_file.with_suffix(".output.json")
            output_file.write_text(json.dumps(output))
            command += ["--workers", str(count), "--service-s", str(service_s)]
            command += ["--output-json", str(output_file)]
        if self.webhooks:
            command.append("--webhook-ok")
        return command

    def start(self, timeout_s: float = 20) -> RunPodDoubleProcess:
        log = self.log or self.state_file.with_suffix(".log")
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill -9 hits only it
            )
        wait_until(self._answers, timeout_s, 0.05, what=f"the RunPod double on {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the RunPod double exited with {self.process.returncode}")
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.root}/_test/jobs", timeout=1).ok
        return False

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it lingers."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    # the /_test routes

    def _get(self, path: str) -> Any:
        response = requests.get(f"{self.root}/_test/{path}", timeout=5)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> None:
        requests.post(f"{self.root}/_test/{path}", json=body or {}, timeout=5).raise_for_status()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job: id, job_id, status, created_wall, started_wall, finished_wall, worker,
        forgotten."""
        jobs: list[dict[str, Any]] = self._get("jobs")
        return jobs

    def executions(self) -> dict[str, int]:
        counts: dict[str, int] = self._get("executions")
        return counts

    def kills(self) -> list[dict[str, Any]]:
        kills: list[dict[str, Any]] = self._get("kills")
        return kills

    def requests(self) -> list[dict[str, Any]]:
        """Hosted-API requests: at (monotonic), op, job_id, status."""
        made: list[dict[str, Any]] = self._get("requests")
        return made

    def arm_kill_next_submitter(self) -> None:
        self._post("kill-next-submitter")

    def fail_next(self, op: str, status: int, **more: Any) -> None:
        self._post("fail-next", {"op": op, "status": status, **more})

    def hang_next(self, op: str, seconds: float, times: int = 1) -> None:
        self._post("hang-next", {"op": op, "seconds": seconds, "times": times})
