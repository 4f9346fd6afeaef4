"""A RunPod-compatible endpoint on 127.0.0.1, so the real runpod SDK runs on both sides:
the hosted API the master's client calls (`/v2/{endpoint}/run|status|cancel|health`) and
the worker API the runpod worker SDK polls (job-take, job-done, job-stop, ping).

It runs in a thread of the test process (`RunPodDouble(...).start()`) or as its own
process (`python -m tests.doubles.runpod`, see `__main__`). Tests turn its knobs (cold
starts, queue delay), plan fates for the next jobs (FAILED, TIMED_OUT, lost), plan HTTP
faults and hangs (`gate`), and may give it a state file (`store`) that every job state
change reaches before its answer, so a double killed and started again carries on.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from tests.doubles.runpod.control import control_routes
from tests.doubles.runpod.gate import HostedGate, fault
from tests.doubles.runpod.handlers import Handlers
from tests.doubles.runpod.simulated import WORKER, SimulatedPool, SimulatedWorkers
from tests.doubles.runpod.state import FINAL, EndpointState, Fate, Job, Worker, executions
from tests.doubles.runpod.store import JobStore

__all__ = ["Fate", "RunPodDouble", "SimulatedWorkers"]


class RunPodDouble(Handlers):
    """Start with `start()`; `base_url` for the client SDK, `worker_env()` for workers.

    `api_key`: hosted requests must carry `Authorization: Bearer <key>` (else 401).
    `state_file`: sqlite file to persist to and restore from (None: memory only).
    `port`: 0 for any free one. `webhooks`: call the jobs' webhooks when they end.
    """

    def __init__(
        self,
        endpoint_id: str = "stillhouse-test",
        simulated: SimulatedWorkers | None = None,
        *,
        api_key: str | None = None,
        state_file: Path | str | None = None,
        port: int = 0,
        webhooks: bool = True,
        **knobs: float,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.state = EndpointState(**knobs)  # type: ignore[arg-type]
        self.simulated = simulated
        self.state_file = state_file
        self.webhooks = webhooks
        self.port = port
        self.gate = HostedGate(self.state, endpoint_id, api_key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._changed: asyncio.Event | None = None
        self._store: JobStore | None = None
        self._pool: SimulatedPool | None = None

    # -- for tests ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What `STILLHOUSE_RUNPOD__BASE_URL` points at (RunPod's `/v2`)."""
        return f"http://127.0.0.1:{self.port}/v2"

    @property
    def rest_url(self) -> str:
        """What `STILLHOUSE_RUNPOD__REST_URL` points at (RunPod's REST API, `/v1`)."""
        return f"http://127.0.0.1:{self.port}/rest/v1"

    def worker_env(self, worker_id: str) -> dict[str, str]:
        """The environment the real runpod worker SDK reads."""
        root = f"http://127.0.0.1:{self.port}"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID?id=$ID",
            "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_AI_API_KEY": "test-worker-key",
            "RUNPOD_PING_INTERVAL": "1000",
        }

    def plan(self, *fates: Fate) -> None:
        """What happens to the next jobs submitted, in order."""
        self.state.fates.extend(fates)

    def fail_next(
        self,
        op: str,
        status: int,
        times: int = 1,
        body: Any = None,
        content_type: str = "application/json",
    ) -> None:
        """The next `times` hosted requests of `op` (run, status, cancel, health) answer
        `status` with `body` (JSON-dumped unless text or bytes); a failed run makes no job."""
        self.gate.fail_next(op, fault(status, body, content_type), times)

    def hang_next(self, op: str, seconds: float, times: int = 1) -> None:
        """The next `times` hosted requests of `op` wait `seconds`, then are handled."""
        self.gate.hang_next(op, seconds, times)

    def arm_kill_next_submitter(self) -> None:
        """The next /run whose User-Agent names a master: accepted, then its sender killed."""
        self.state.kill_armed = True

    @property
    def kills(self) -> list[dict[str, Any]]:
        return self.state.kills

    def jobs_for(self, public_id: str) -> list[Job]:
        """Every RunPod job submitted for one of our jobs, oldest first."""
        return [j for j in self.state.jobs.values() if j.public_id == public_id]

    def executions(self) -> dict[str, int]:
        """Public job id -> how many RunPod jobs for it a worker took."""
        return executions([*self.state.jobs.values(), *self.state.lost_jobs.values()])

    def start(self) -> RunPodDouble:
        self._thread = threading.Thread(target=self._serve, daemon=True, name="runpod-double")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the RunPod double did not start")
        if self._failed is not None:
            raise RuntimeError("the RunPod double did not start") from self._failed
        return self

    def stop(self) -> None:
        if self._loop is not None and self._failed is None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- the server -----------------------------------------------------------------------

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._startup())
        except BaseException as exc:  # e.g. the port is taken: start() says so
            self._failed = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self) -> None:
        self._changed = asyncio.Event()
        self._http = ClientSession(timeout=ClientTimeout(total=5))
        if self.simulated is not None:
            self._pool = SimulatedPool(self.simulated, self.state, self._finish, self._time_out)
        if self.state_file is not None:
            self._store = JobStore(self.state_file)
            self._restore(self._store)
            self.state.on_change = self._store.save
        app = web.Application(client_max_size=64 * 2**20, middlewares=[self.gate.middleware])
        ep = "/v2/{endpoint}"
        app.add_routes(
            [
                web.post(f"{ep}/run", self._run, name="run"),
                web.get(f"{ep}/status/{{job}}", self._status, name="status"),
                web.post(f"{ep}/cancel/{{job}}", self._cancel, name="cancel"),
                web.get(f"{ep}/health", self._health, name="health"),
                # RunPod's REST API (rest.runpod.io/v1) for the endpoint's own settings.
                web.patch(
                    "/rest/v1/endpoints/{endpoint}", self._update_endpoint, name="update_endpoint"
                ),
                web.get("/job-take/{worker}", self._take),
                web.get("/job-take-batch/{worker}", self._take),
                web.post("/job-done/{worker}", self._done),
                web.get("/job-stop/{worker}", self._stop_signals),
                web.get("/ping/{worker}", self._ping),
                *control_routes(self),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._sweeper = asyncio.create_task(self._sweep())
        if self._pool is not None:
            self._pool.pump()

    def _restore(self, store: JobStore) -> None:
        """Carry on from the state file: queued jobs queue again in creation order, jobs
        in progress keep running (simulated ones end at their start + service_s; real
        workers still hold theirs), final jobs keep answering /status."""
        loop = asyncio.get_running_loop()
        for job in store.load():
            self.state.restore(job)
            if job.forgotten or job.status in FINAL:
                continue
            if job.fate is Fate.LOSE:
                loop.call_later(self.state.lose_after_s, self.state.forget, job.id)
            if job.status != "IN_PROGRESS":
                continue
            if self._pool is not None and job.worker == WORKER:
                self._pool.resume(job)
            elif job.worker is not None:
                worker = self.state.workers.setdefault(job.worker, Worker(job.worker))
                worker.current.add(job.id)
        self.state.kills.extend(store.load_kills())

    async def _shutdown(self) -> None:
        self._sweeper.cancel()
        if self._pool is not None:
            self._pool.close()
        await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._store is not None:
            self._store.close()
