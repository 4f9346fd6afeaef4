"""Real processes for master tests: runpod worker processes (our handler, each with its
own ComfyUI double) polling the RunPod double, and `stillhouse master` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from stillhouse.config import StorageSettings
from stillhouse.queue import GenerationQueue
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import NewJob, Routing
from tests.doubles.runpod.server import RunPodDouble
from tests.support import free_port, wait_until
from tests.worker.comfy_double import double_command
from tests.worker.harness import captured

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ComfyGraph.model_validate(captured("txt2img_64_s1"))


def storage_env(storage: StorageSettings | None) -> dict[str, str]:
    """S3 settings for a child process; none when the test gives local storage itself."""
    if storage is None:
        return {}
    assert storage.s3_bucket and storage.s3_access_key_id and storage.s3_secret_access_key
    return {
        "STILLHOUSE_STORAGE__BACKEND": "s3",
        "STILLHOUSE_STORAGE__S3_BUCKET": storage.s3_bucket,
        "STILLHOUSE_STORAGE__S3_ENDPOINT_URL": storage.s3_endpoint_url or "",
        "STILLHOUSE_STORAGE__S3_ACCESS_KEY_ID": storage.s3_access_key_id.get_secret_value(),
        "STILLHOUSE_STORAGE__S3_SECRET_ACCESS_KEY": storage.s3_secret_access_key.get_secret_value(),
    }


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "RUNPOD_"))}


@dataclass
class Cluster:
    """Processes started for one test; all killed (whole process groups) at the end."""

    tmp: Path
    double: RunPodDouble
    storage: StorageSettings | None
    database_url: str
    memcached: str = ""
    master_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(
        self, name: str, *comfy_switches: str, env: dict[str, str] | None = None
    ) -> str:
        """A runpod worker process with its own ComfyUI double; the double's URL."""
        comfy_port = free_port()
        settings = env or {}
        env = {
            **base_env(),
            **storage_env(self.storage),
            **self.double.worker_env(name),
            "STILLHOUSE_DATA_DIR": str(self.tmp / name),
            "STILLHOUSE_LOG__FORMAT": "text",
            "STILLHOUSE_WORKER__COMFY_URL": f"http://127.0.0.1:{comfy_port}",
            "STILLHOUSE_WORKER__COMFY_COMMAND": double_command(
                comfy_port, "--step-time", "0.002", *comfy_switches
            ),
            "STILLHOUSE_WORKER__ALLOWED_INPUT_HOSTS": "127.0.0.1",
            **settings,
        }
        self.spawn(name, [sys.executable, "-m", "worker"], env)
        return f"http://127.0.0.1:{comfy_port}"

    def start_master(self, name: str, **settings: str) -> None:
        env = {
            **base_env(),
            **storage_env(self.storage),
            "STILLHOUSE_DATA_DIR": str(self.tmp / name),
            "STILLHOUSE_LOG__FORMAT": "text",
            "STILLHOUSE_DATABASE__URL": self.database_url,
            "STILLHOUSE_MEMCACHED__SERVERS": self.memcached,
            "STILLHOUSE_MASTER__BACKEND": "runpod",
            "STILLHOUSE_MASTER__HTTP_PORT": "0",
            "STILLHOUSE_MASTER__POLL_INTERVAL_S": "0.2",
            "STILLHOUSE_MASTER__CLAIM_INTERVAL_S": "0.2",
            "STILLHOUSE_MASTER__REAP_INTERVAL_S": "0.5",
            "STILLHOUSE_MASTER__DRAIN_GRACE_S": "2",
            "STILLHOUSE_MASTER__MAX_IN_FLIGHT": "16",
            "STILLHOUSE_MASTER__BACKEND_MAX_IN_FLIGHT": "24",
            "STILLHOUSE_QUEUE__LEASE_S": "6",
            "STILLHOUSE_QUEUE__BACKOFF_BASE_S": "0.2",
            "STILLHOUSE_QUEUE__BACKOFF_MAX_S": "1",
            "STILLHOUSE_RUNPOD__ENDPOINT_ID": self.double.endpoint_id,
            "STILLHOUSE_RUNPOD__API_KEY": "test-client-key",
            "STILLHOUSE_RUNPOD__BASE_URL": self.double.base_url,
            "STILLHOUSE_RUNPOD__LOST_AFTER_POLLS": "2",
            **self.master_env,
            **{f"STILLHOUSE_{k.upper()}": v for k, v in settings.items()},
        }
        self.spawn(name, [sys.executable, "-m", "stillhouse", "master"], env)

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        (self.tmp / name).mkdir(parents=True, exist_ok=True)
        with (self.tmp / name / "process.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill -9 takes its children along
            )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def terminate(self, name: str) -> int:
        """SIGTERM (the process, not its group) and wait; its exit code."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # leftovers (a worker's ComfyUI)
        return code

    def wait_for_outcomes(self, queue: GenerationQueue, engine: Engine, timeout_s: float) -> None:
        """Until every job ended; on timeout, fail with what the cluster looks like."""
        from tests.master.outcomes import unfinished

        try:
            wait_until(
                lambda: unfinished(engine) == 0,
                timeout_s=timeout_s,
                interval_s=0.5,
                what="every job to end",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose(queue)}") from None

    def diagnose(self, queue: GenerationQueue) -> str:
        """What a stuck run looks like, for the failure message."""
        state = self.double.state
        lines = [
            f"queue: {queue.counts()}",
            f"runpod: {dict(Counter(j.status for j in state.jobs.values()))}",
            "workers: "
            + ", ".join(
                f"{w.id}:{w.taken}{'*' if w.current else ''}" for w in state.workers.values()
            ),
            f"alive: {[n for n, p in self.processes.items() if p.poll() is None]}",
        ]
        for name in self.processes:
            if name.startswith("m"):
                lines.append(f"--- {name}\n{self.log(name)[-3000:]}")
        return "\n".join(lines)

    def log(self, name: str) -> str:
        return (self.tmp / name / "process.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name)


def enqueue(
    queue: GenerationQueue, count: int, *, max_attempts: int = 3, graph: Any = None
) -> list[str]:
    """Jobs as a bot would queue them; their public ids."""
    ids = []
    for n in range(count):
        job = NewJob(
            routing=Routing(user_id=n, channel_id=1),
            workflow_name="smoke",
            graph=graph or GRAPH,
            max_attempts=max_attempts,
        )
        ids.append(queue.enqueue(job).job.public_id)
    return ids
