"""A RunPod-compatible endpoint on 127.0.0.1, so the real runpod SDK runs on both sides:
the hosted API the master's client calls (`/v2/{endpoint}/run|status|cancel|health`) and
the worker API the runpod worker SDK polls (job-take, job-done, job-stop, ping).

It runs in a thread of the test process; tests turn its knobs (cold starts, queue delay)
and plan fates for the next jobs (FAILED, TIMED_OUT, lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from tests.doubles.runpod.state import FINAL, EndpointState, Fate, Job, Worker

LONG_POLL_S = 1.0
SWEEP_S = 0.1


@dataclass(frozen=True)
class SimulatedWorkers:
    """A pool of `count` workers inside the double, each job taking `service_s`, each
    answering `output` (the worker's output contract) — no worker processes."""

    count: int
    service_s: float
    output: dict[str, Any]


class RunPodDouble:
    """Start with `start()`; `base_url` for the client SDK, `worker_env()` for workers."""

    def __init__(
        self,
        endpoint_id: str = "stillhouse-test",
        simulated: SimulatedWorkers | None = None,
        **knobs: float,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.state = EndpointState(**knobs)  # type: ignore[arg-type]
        self.simulated = simulated
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._changed: asyncio.Event | None = None

    # -- for tests ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What `STILLHOUSE_RUNPOD__BASE_URL` points at (RunPod's `/v2`)."""
        return f"http://127.0.0.1:{self.port}/v2"

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

    def jobs_for(self, public_id: str) -> list[Job]:
        """Every RunPod job submitted for one of our jobs, oldest first."""
        return [j for j in self.state.jobs.values() if j.input.get("job_id") == public_id]

    def start(self) -> RunPodDouble:
        self._thread = threading.Thread(target=self._serve, daemon=True, name="runpod-double")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the RunPod double did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- the server -----------------------------------------------------------------------

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._startup())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self) -> None:
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 2**20)
        ep = "/v2/{endpoint}"
        app.add_routes(
            [
                web.post(f"{ep}/run", self._run),
                web.get(f"{ep}/status/{{job}}", self._status),
                web.post(f"{ep}/cancel/{{job}}", self._cancel),
                web.get(f"{ep}/health", self._health),
                web.get("/job-take/{worker}", self._take),
                web.post("/job-done/{worker}", self._done),
                web.get("/job-stop/{worker}", self._stop_signals),
                web.get("/ping/{worker}", self._ping),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._sweeper = asyncio.create_task(self._sweep())
        self._simulations: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.simulated.count if self.simulated else 1)
        self._http = ClientSession(timeout=ClientTimeout(total=5))

    async def _shutdown(self) -> None:
        self._sweeper.cancel()
        for task in self._simulations:
            task.cancel()
        await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _touch(self) -> None:
        # Wake every waiter: each holds the event of its moment, set here and replaced,
        # so one waiter can never clear another's wake-up (and delay its job).
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, seconds: float) -> None:
        assert self._changed is not None
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), seconds)

    # hosted API

    async def _run(self, request: web.Request) -> web.Response:
        if request.match_info["endpoint"] != self.endpoint_id:
            return web.json_response({"error": "endpoint not found"}, status=404)
        job = self.state.add(await request.json())
        if job.fate is Fate.LOSE:
            asyncio.get_running_loop().call_later(self.state.lose_after_s, self._forget, job.id)
        if self.simulated is not None:
            task = asyncio.create_task(self._simulate(job, self.simulated))
            self._simulations.add(task)
            task.add_done_callback(self._simulations.discard)
        self._touch()
        return web.json_response({"id": job.id, "status": job.status})

    async def _simulate(self, job: Job, simulated: SimulatedWorkers) -> None:
        """A worker of the simulated pool takes the job when one is free and answers
        after the fixed service time (the soak test's GPUs)."""
        async with self._slots:
            if job.status != "IN_QUEUE" or job.id not in self.state.jobs:
                return
            job.status, job.worker, job.started = "IN_PROGRESS", "simulated", time.monotonic()
            await asyncio.sleep(simulated.service_s)
            output = dict(simulated.output)
            output["images"] = [dict(i) for i in output.get("images", [])]
            self.state.finish(job, "COMPLETED", output=output)
            self._touch()
        await self._webhook(job)  # the worker is free again; RunPod's control plane calls

    def _forget(self, job_id: str) -> None:
        self.state.jobs.pop(job_id, None)
        self.state.forgotten.add(job_id)

    async def _status(self, request: web.Request) -> web.Response:
        job = self.state.jobs.get(request.match_info["job"])
        if job is None:
            return web.json_response({"error": "request does not exist"}, status=404)
        return web.json_response(job.public())

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self.state.jobs.get(request.match_info["job"])
        if job is None:
            return web.json_response({"error": "request does not exist"}, status=404)
        if job.status not in FINAL:
            worker = self.state.workers.get(job.worker or "")
            if worker is not None:
                worker.stop.add(job.id)
            await self._finish(job, "CANCELLED")
        return web.json_response({"id": job.id, "status": job.status})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state.health())

    # worker API

    async def _take(self, request: web.Request) -> web.Response:
        worker_id = request.match_info["worker"]
        first = worker_id not in self.state.workers or not self.state.workers[worker_id].taken
        if first and self.state.cold_start_s:
            await asyncio.sleep(self.state.cold_start_s)
        deadline = time.monotonic() + LONG_POLL_S
        while True:
            job = self.state.next_for(worker_id)
            if job is not None:
                if job.fate is Fate.TIME_OUT:
                    asyncio.get_running_loop().call_later(
                        self.state.time_out_after_s, self._time_out, job.id
                    )
                return web.json_response({"id": job.id, "input": job.input})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return web.Response(status=204)
            await self._wait_change(min(remaining, 0.1))

    def _time_out(self, job_id: str) -> None:
        job = self.state.jobs.get(job_id)
        if job is not None and job.status == "IN_PROGRESS":
            worker = self.state.workers.get(job.worker or "")
            if worker is not None:
                worker.stop.add(job.id)
            asyncio.get_running_loop().create_task(self._finish(job, "TIMED_OUT"))

    async def _done(self, request: web.Request) -> web.Response:
        worker = self.state.workers.get(request.match_info["worker"])
        if worker is not None:
            worker.last_seen = time.monotonic()
        job = self.state.jobs.get(request.query.get("id", ""))
        body = json.loads(await request.text() or "{}")
        if job is None or job.status in FINAL:
            return web.Response(text="ok")  # forgotten, cancelled or timed out: dropped
        if body.get("status") == "IN_PROGRESS":
            job.output = body.get("output")  # progress, shown by /status
        elif job.fate is Fate.FAIL:
            await self._finish(job, "FAILED", error="handler: CUDA error: an illegal memory access")
        elif "error" in body:
            await self._finish(job, "FAILED", error=body["error"])
        else:
            await self._finish(job, "COMPLETED", output=body.get("output"))
        return web.Response(text="ok")

    async def _stop_signals(self, request: web.Request) -> web.Response:
        worker = self.state.workers.get(request.match_info["worker"])
        deadline = time.monotonic() + LONG_POLL_S
        while time.monotonic() < deadline:
            if worker is not None and worker.stop:
                ids, worker.stop = sorted(worker.stop), set()
                return web.json_response({"jobsToStop": ids})
            await asyncio.sleep(0.05)
        return web.Response(status=204)

    async def _ping(self, request: web.Request) -> web.Response:
        worker_id = request.match_info["worker"]
        worker = self.state.workers.setdefault(worker_id, Worker(worker_id))
        worker.last_seen = time.monotonic()
        return web.Response(text="ok")

    async def _finish(self, job: Job, status: str, **result: Any) -> None:
        self.state.finish(job, status, **result)
        self._touch()
        await self._webhook(job)

    async def _webhook(self, job: Job) -> None:
        if job.webhook:
            with contextlib.suppress(Exception):  # RunPod's webhooks are best effort too
                async with self._http.post(job.webhook, json=job.public()):
                    pass

    async def _sweep(self) -> None:
        """Jobs whose worker stopped pinging fail, as RunPod fails them."""
        if self.simulated is not None:
            return  # no worker processes to lose
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for job in list(self.state.jobs.values()):
                if job.status != "IN_PROGRESS":
                    continue
                worker = self.state.workers.get(job.worker or "")
                if worker is None or now - worker.last_seen > self.state.worker_lost_after_s:
                    await self._finish(job, "FAILED", error="worker exited unexpectedly")
