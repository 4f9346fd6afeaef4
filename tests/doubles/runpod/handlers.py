"""The double's request handlers: the hosted API (`/v2/{endpoint}/…`, behind the gate) and
the worker API the runpod worker SDK polls (job-take, job-done, job-stop, ping). Every job
state change goes through `EndpointState`, which persists it before the answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import ClientSession, web

from tests.doubles.runpod.control import kill_group, submitter_pid
from tests.doubles.runpod.gate import RUNPOD_JOB
from tests.doubles.runpod.simulated import SimulatedPool, SimulatedWorkers
from tests.doubles.runpod.state import FINAL, EndpointState, Fate, Job, Worker
from tests.doubles.runpod.store import JobStore

LONG_POLL_S = 1.0
# What RunPod's REST API lets PATCH /v1/endpoints/{id} change (EndpointUpdateInput).
ENDPOINT_FIELDS = frozenset(
    {
        "allowedCudaVersions",
        "cpuFlavorIds",
        "dataCenterIds",
        "executionTimeoutMs",
        "flashboot",
        "gpuCount",
        "gpuTypeIds",
        "idleTimeout",
        "name",
        "networkVolumeId",
        "scalerType",
        "scalerValue",
        "templateId",
        "vcpuCount",
        "workersMax",
        "workersMin",
    }
)
SWEEP_S = 0.1


class Handlers:
    """Mixed into `RunPodDouble`, which sets these up on its event loop."""

    state: EndpointState
    simulated: SimulatedWorkers | None
    webhooks: bool
    _changed: asyncio.Event | None
    _store: JobStore | None
    _pool: SimulatedPool | None
    _http: ClientSession

    async def _update_endpoint(self, request: web.Request) -> web.Response:
        """PATCH /v1/endpoints/{id}: change the endpoint's settings, as RunPod's REST API
        does: known fields only, worker counts whole and 0 <= workersMin <= workersMax;
        the endpoint as it now is."""
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict) or not body:
            return web.json_response({"error": "nothing to update"}, status=400)
        unknown = sorted(set(body) - ENDPOINT_FIELDS)
        if unknown:
            return web.json_response({"error": f"unknown fields: {unknown}"}, status=400)
        counts = {k: body[k] for k in ("workersMin", "workersMax") if k in body}
        if any(type(v) is not int or v < 0 for v in counts.values()):
            return web.json_response({"error": "worker counts are whole numbers >= 0"}, status=400)
        wanted = {**self.state.settings, **body}
        if wanted["workersMin"] > wanted["workersMax"]:
            return web.json_response({"error": "workersMin exceeds workersMax"}, status=400)
        self.state.settings = wanted
        endpoint = request.match_info["endpoint"]
        return web.json_response({"id": endpoint, "name": endpoint, **wanted})

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

    # hosted API (behind the gate: auth, faults, unknown endpoints)

    async def _run(self, request: web.Request) -> web.Response:
        job = self.state.add(await request.json())  # persisted before the answer
        request[RUNPOD_JOB] = job.id
        loop = asyncio.get_running_loop()
        if job.fate is Fate.LOSE:
            loop.call_later(self.state.lose_after_s, self.state.forget, job.id)
        if self._pool is not None:
            loop.call_soon(self._pool.pump)  # after this answer: /run says IN_QUEUE
        self._touch()
        self._kill_submitter(request, job)
        return web.json_response({"id": job.id, "status": job.status})

    def _kill_submitter(self, request: web.Request, job: Job) -> None:
        """The armed hook: kill the master that sent this /run before it hears the id."""
        if not self.state.kill_armed:
            return
        pid = submitter_pid(request.headers.get("User-Agent", ""))
        if pid is None:
            return  # not a master: stay armed
        self.state.kill_armed = False
        kill_group(pid)
        kill = {"job_id": job.public_id, "runpod_id": job.id, "pid": pid, "at": time.time()}
        self.state.kills.append(kill)
        if self._store is not None:
            self._store.save_kill(kill)

    async def _status(self, request: web.Request) -> web.Response:
        job = self.state.jobs.get(request.match_info["job"])
        if job is None:
            return web.json_response({"error": "request does not exist"}, status=404)
        return web.json_response(job.public())

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self.state.jobs.get(request.match_info["job"])
        if job is None:
            return web.json_response({"error": "request does not exist"}, status=404)
        if job.status not in FINAL:  # a final job keeps its status: its result won
            worker = self.state.workers.get(job.worker or "")
            if worker is not None:
                worker.stop.add(job.id)  # offered on /job-stop, as the worker SDK polls
            await self._finish(job, "CANCELLED")
        return web.json_response({"id": job.id, "status": job.status})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state.health())

    # worker API

    async def _take(self, request: web.Request) -> web.Response:
        """`/job-take/` (one job) or `/job-take-batch/` (a list of up to `batch_size`,
        what the SDK asks for when its worker may hold more than one), long-polled."""
        worker_id = request.match_info["worker"]
        first = worker_id not in self.state.workers or not self.state.workers[worker_id].taken
        if first and self.state.cold_start_s:
            await asyncio.sleep(self.state.cold_start_s)
        batch = request.path.startswith("/job-take-batch/")
        wanted = max(1, int(request.query.get("batch_size", "1"))) if batch else 1
        holding = request.query.get("job_in_progress") == "1"
        deadline = time.monotonic() + LONG_POLL_S
        while True:
            taken = []
            while len(taken) < wanted:
                job = self.state.next_for(worker_id, holding=holding or bool(taken))
                if job is None:
                    break
                if job.fate is Fate.TIME_OUT:
                    asyncio.get_running_loop().call_later(
                        self.state.time_out_after_s, self._time_out, job.id
                    )
                taken.append({"id": job.id, "input": job.input})
            if taken:
                return web.json_response(taken if batch else taken[0])
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
            job.output = body.get("output")  # progress, shown by /status (not persisted)
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
        self.state.finish(job, status, **result)  # persisted here
        if self._pool is not None:
            self._pool.stop(job.id)  # a cancelled or timed-out simulated GPU stops
        self._touch()
        await self._webhook(job)

    async def _webhook(self, job: Job) -> None:
        if job.webhook and self.webhooks:
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
