"""The RunPod handler, top to bottom: validate, make sure ComfyUI runs, stage the inputs,
queue the graph and follow it, collect every output image, upload, return; then clean up.

Every failure becomes `{"error": ErrorInfo as JSON text}` (RunPod carries errors as
strings): never an unhandled exception, never an empty result. Every wait (ComfyUI's
start, its queue, each HTTP call) ends at the job's `timeout_s` deadline. Cancellation
(RunPod stops the task) and the deadline interrupt ComfyUI on the way out, which may add
at most INTERRUPT_LIMIT_S past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import ValidationError

from stillhouse.config import Settings
from stillhouse.errors import InvalidKey, StorageError
from stillhouse.logs import log_context
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.worker_io import (
    ComfyInfo,
    ErrorInfo,
    ImageRef,
    Timings,
    WorkerInput,
    WorkerOutput,
)
from stillhouse.storage import Storage
from stillhouse.storage.base import validate_key
from stillhouse.storage.over_http import ObjectsOverHttp
from worker import health, policy
from worker.cleanup import Cleaner
from worker.comfy.client import ComfyClient
from worker.comfy.follow import Execution, Limits, Progress, execute
from worker.comfy.supervisor import Supervisor
from worker.errors import JobFailure, invalid_input
from worker.inputs import check_sources, stage_inputs
from worker.sessions import Sessions
from worker.uploads import Put, upload

log = logging.getLogger(__name__)
ProgressReport = Callable[[dict[str, Any], dict[str, Any]], None]
INTERRUPT_LIMIT_S = 2.0
OVER_TIME = "the job ran past its time limit"


@dataclass
class WorkerContext:
    """What outlives a job: settings, the ComfyUI supervisor, storage, progress sink."""

    settings: Settings
    supervisor: Supervisor
    storage: Storage
    report_progress: ProgressReport
    allowed_nodes: frozenset[str]
    cleaner: Cleaner
    # Whose turn it is to queue a prompt on ComfyUI (see _Turn). A worker may hold a
    # second job (its concurrency): that one waits here until the prompt before it runs.
    comfy_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    sessions: Sessions = field(default_factory=Sessions)
    objects: ObjectsOverHttp = field(init=False)

    def __post_init__(self) -> None:
        self.objects = ObjectsOverHttp(self.storage)


async def handle(job: dict[str, Any], ctx: WorkerContext) -> dict[str, Any]:
    """One RunPod job -> WorkerOutput or WorkerError, as a plain dict."""
    job_input = job.get("input") or {}
    with log_context(public_id=str(job_input.get("job_id", "")), runpod_id=job.get("id")):
        try:
            output = await run(job, ctx)
        except JobFailure as failure:
            log.warning(
                "job failed: %s",
                failure.info.message,
                extra={"action": "worker.failed", "error_type": failure.info.type},
            )
            health.count(failure.info.type)
            return {"error": failure.info.model_dump_json()}
        except asyncio.CancelledError:
            log.info("job cancelled", extra={"action": "worker.cancelled"})
            health.count("cancelled")
            raise
        except Exception:
            log.exception("unexpected worker error", extra={"action": "worker.crashed"})
            health.count("internal")
            error = ErrorInfo(
                type="internal", message="the worker hit an unexpected error", retryable=True
            )
            return {"error": error.model_dump_json()}
        log.info("job done", extra={"action": "worker.done", "images": len(output.images)})
        health.count("done")
        return output.model_dump()


async def run(job: dict[str, Any], ctx: WorkerContext) -> WorkerOutput:
    """The steps; each raises JobFailure with what went wrong."""
    request = validate(job.get("input"), ctx)
    folder = policy.job_folder(request.job_id)
    graph = policy.enforce(request.workflow, ctx.allowed_nodes, folder)
    deadline = time.monotonic() + request.timeout_s  # the loop's clock too
    try:
        async with ctx.sessions.session() as session:  # kept from job to job
            try:
                async with asyncio.timeout_at(deadline):
                    return await _steps(job, ctx, request, graph, session, deadline)
            except TimeoutError:  # ComfyUI, if it was running our prompt, was interrupted
                raise JobFailure("timeout", OVER_TIME, retryable=True) from None
    finally:
        ctx.cleaner.clean_outputs(folder)


async def _steps(
    job: dict[str, Any],
    ctx: WorkerContext,
    request: WorkerInput,
    graph: ComfyGraph,
    session: aiohttp.ClientSession,
    deadline: float,
) -> WorkerOutput:
    progress = _Throttled(job, ctx)
    if ctx.comfy_turn.locked():
        progress.stage("waiting for the GPU")  # the job before it is still on ComfyUI
    async with _Turn(ctx.comfy_turn) as turn:
        progress.stage("starting ComfyUI")
        comfy_start_s = await ctx.supervisor.ensure_ready(session, deadline)
        client = ComfyClient(session, ctx.supervisor.url)
        try:
            await stage_inputs(client, request.inputs, ctx.settings)
            progress.stage("queued")
            execution = await _run_prompt(
                client, graph, ctx, progress, session, deadline, turn.pass_on
            )
            ctx.supervisor.heard_from()
        finally:
            ctx.cleaner.clean_inputs([image.name for image in request.inputs])
    progress.stage("uploading")
    upload_began = time.monotonic()
    put = functools.partial(ctx.objects.put, session)  # on the loop, over the same session
    images = await collect_and_upload(client, execution, request, put, deadline)
    upload_s = time.monotonic() - upload_began
    return WorkerOutput(
        images=images,
        timings=Timings(
            comfy_start_ms=comfy_start_s * 1000,
            queue_ms=execution.queued_s * 1000,
            execute_ms=execution.execute_ms,
            upload_ms=upload_s * 1000,
        ),
        comfy=ComfyInfo(prompt_id=execution.prompt_id, version=ctx.supervisor.version),
    )


def validate(raw: object, ctx: WorkerContext) -> WorkerInput:
    """The job input as the contract, and a bucket this worker may write to."""
    try:
        request = WorkerInput.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise invalid_input(f"bad job input at {where}: {first['msg']}") from None
    if request.output.bucket != ctx.storage.bucket:
        raise invalid_input(f"this worker does not write to bucket {request.output.bucket!r}")
    try:  # the keys the images will get, checked now rather than after the GPU ran
        validate_key(f"{request.output.prefix.rstrip('/')}/{request.job_id}/x.png".lstrip("/"))
        if request.output.prefix.startswith("/"):
            raise InvalidKey(f"output prefix must be relative: {request.output.prefix!r}")
    except InvalidKey as exc:
        raise invalid_input(str(exc)) from None
    check_sources(request.inputs, ctx.settings)
    return request


async def collect_and_upload(
    client: ComfyClient,
    execution: Execution,
    request: WorkerInput,
    put: Put,
    deadline: float,
) -> list[ImageRef]:
    """Every image of type `output`, fetched from ComfyUI and stored (storage outages
    retried until the deadline)."""
    wanted = [(node, image) for node, image in execution.images if image.type == "output"]
    if not wanted:
        raise JobFailure(
            "no_output", "the workflow finished without saving an image", retryable=False
        )
    prefix = request.output.prefix
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    refs = []
    for node_id, image in wanted:
        data = await client.view(image)
        try:
            refs.append(await upload(put, prefix, request.job_id, node_id, data, deadline))
        except InvalidKey as exc:
            raise invalid_input(str(exc)) from None
        except ValueError as exc:
            raise JobFailure(
                "bad_output", f"ComfyUI wrote an unreadable image: {exc}", retryable=True
            ) from None
        except (StorageError, OSError) as exc:
            raise JobFailure(
                "upload_failed", f"could not store the image: {exc}", retryable=True
            ) from None
    return refs


async def _run_prompt(
    client: ComfyClient,
    graph: ComfyGraph,
    ctx: WorkerContext,
    progress: _Throttled,
    session: aiohttp.ClientSession,
    deadline: float,
    on_started: Callable[[], None],
) -> Execution:
    """Queue and follow the prompt; if the job stops (cancelled, out of time) while
    ComfyUI holds it, take that prompt back (a dead or frozen ComfyUI is not asked)."""
    limits = Limits(
        deadline=deadline,
        inactivity_s=ctx.settings.worker.ws_inactivity_s,
        poll_interval_s=ctx.settings.worker.poll_interval_s,
    )
    queued: list[str] = []
    try:
        return await execute(
            client,
            graph,
            limits,
            progress.comfy,
            ctx.supervisor.watch(session),
            queued.append,
            on_started,
        )
    except (JobFailure, asyncio.CancelledError) as stop:
        ended = isinstance(stop, JobFailure) and stop.info.type != "timeout"
        if queued and not ended:
            await _take_back(client, queued[0])
        raise


async def _take_back(client: ComfyClient, prompt_id: str) -> None:
    """Take our prompt back from ComfyUI within INTERRUPT_LIMIT_S (it may be gone or
    frozen: then there is nothing to stop); shielded, so the job's own cancellation
    does not cut it short."""
    task = asyncio.ensure_future(client.take_back(prompt_id))
    task.add_done_callback(_outcome_unneeded)
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), INTERRUPT_LIMIT_S)


def _outcome_unneeded(task: asyncio.Future[None]) -> None:
    """A call given up on may still fail later: its error is of no interest."""
    if not task.cancelled():
        task.exception()


class _Turn:
    """The turn to queue a prompt on ComfyUI, passed on as soon as that prompt starts
    executing: the next job's prompt then waits in ComfyUI's own queue, and the GPU goes
    from one prompt to the next without waiting for the worker (fetching and uploading
    the first one's images, the runpod SDK handing over the next job). ComfyUI holds at
    most the running prompt and one queued behind it, whatever the worker's concurrency."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock
        self._held = False

    async def __aenter__(self) -> _Turn:
        await self._lock.acquire()
        self._held = True
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.pass_on()

    def pass_on(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


class _Throttled:
    """Progress to RunPod, at most once per interval (stage changes always go out)."""

    def __init__(self, job: dict[str, Any], ctx: WorkerContext) -> None:
        self.job = job
        self.report = ctx.report_progress
        self.interval = ctx.settings.worker.progress_interval_s
        self.last = 0.0
        self.counted = False  # a step count has been reported

    def stage(self, name: str) -> None:
        self._send({"stage": name}, force=True)

    def comfy(self, event: Progress) -> None:
        update: dict[str, Any] = {"stage": "running", "node": event.node}
        first = False
        if event.value is not None and event.max:
            update.update(step=event.value, steps=event.max, fraction=event.value / event.max)
            first, self.counted = not self.counted, True
        self._send(update, force=first)  # the first count goes out at once

    def _send(self, update: dict[str, Any], *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        try:
            self.report(self.job, update)
        except Exception:  # progress is advisory; never fail a job over it
            log.debug("progress update failed", exc_info=True)
