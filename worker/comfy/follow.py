"""Queue one prompt and follow it to its end: the websocket first, `/history` after.

The websocket is opened before the prompt is queued so no message is missed. When it
drops or stays silent longer than the inactivity limit (ComfyUI goes quiet on long
nodes, proxies cut idle sockets), the worker polls `/history` instead, checking that
ComfyUI still holds the prompt, so a lost job fails instead of hanging. All along, a
watchdog (the supervisor's) asks ComfyUI whether it still lives: a dead or frozen one
ends the job within seconds, not at its time limit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

import aiohttp

from stillhouse.schemas.graph import ComfyGraph
from worker.comfy.client import ComfyClient, OutputImage
from worker.errors import JobFailure, comfy_unavailable

WS_HEARTBEAT_S = 10.0
QUEUE_CHECK_EVERY = 10  # polls between checks that ComfyUI still holds the prompt
HISTORY_RETRY_S = 0.05


@dataclass(frozen=True)
class Limits:
    """How long to wait for what."""

    deadline: float  # time.monotonic() by which the job must be done
    inactivity_s: float
    poll_interval_s: float
    history_grace_s: float = 10.0


@dataclass(frozen=True)
class Progress:
    """What ComfyUI is doing now."""

    node: str | None
    value: float | None = None
    max: float | None = None


@dataclass
class Execution:
    """A finished prompt: its images and ComfyUI's own timing."""

    prompt_id: str
    images: list[tuple[str, OutputImage]] = field(default_factory=list)
    queued_s: float = 0.0
    started_ms: int | None = None
    finished_ms: int | None = None
    finished: bool = False

    @property
    def execute_ms(self) -> float:
        """ComfyUI's execution time (execution_start to execution_success)."""
        if self.started_ms is None or self.finished_ms is None:
            return 0.0
        return float(self.finished_ms - self.started_ms)


ProgressSink = Callable[[Progress], None]


async def execute(
    client: ComfyClient,
    graph: ComfyGraph,
    limits: Limits,
    on_progress: ProgressSink,
    watchdog: Coroutine[Any, Any, NoReturn],
    on_queued: Callable[[str], None] = lambda _prompt_id: None,
    on_started: Callable[[], None] = lambda: None,
) -> Execution:
    """Run `graph` to completion; JobFailure for node errors, timeouts, a dead ComfyUI
    (from `watchdog`, which raises once ComfyUI is gone or silent). `on_queued` hears the
    prompt's id as soon as ComfyUI took it (to take it back if the job stops);
    `on_started`, when ComfyUI starts executing it (as it says, or at the end when it
    could not say)."""
    watching = asyncio.ensure_future(watchdog)
    following = asyncio.ensure_future(
        _follow(client, graph, limits, on_progress, on_queued, on_started)
    )
    try:
        await asyncio.wait({watching, following}, return_when=asyncio.FIRST_COMPLETED)
        if following.done():
            return following.result()
        watching.result()  # raises: ComfyUI is gone
        raise AssertionError("a watchdog ends only by raising")
    finally:
        for task in (watching, following):
            task.cancel()
        await asyncio.gather(watching, following, return_exceptions=True)


async def _follow(
    client: ComfyClient,
    graph: ComfyGraph,
    limits: Limits,
    on_progress: ProgressSink,
    on_queued: Callable[[str], None],
    on_started: Callable[[], None],
) -> Execution:
    client_id = uuid.uuid4().hex
    ws = await _connect(client, client_id)
    try:
        queued_ms = time.time() * 1000
        prompt_id = await client.queue_prompt(graph, client_id)
        on_queued(prompt_id)
        run = _Tracker(Execution(prompt_id), on_progress, queued_ms, on_started)
        if ws is not None:
            await _follow_socket(ws, run, limits)
    finally:
        if ws is not None:
            await ws.close()
    if not run.execution.finished:
        await _poll_history(client, run, limits)
    await _settle_outputs(client, run, limits)
    return run.execution


async def _connect(client: ComfyClient, client_id: str) -> aiohttp.ClientWebSocketResponse | None:
    try:
        return await client.session.ws_connect(
            client.ws_url, params={"clientId": client_id}, heartbeat=WS_HEARTBEAT_S
        )
    except (aiohttp.ClientError, OSError):
        return None  # polling /history still works


class _Tracker:
    """Applies ComfyUI's messages (from the socket or /history) to one Execution."""

    def __init__(
        self,
        execution: Execution,
        on_progress: ProgressSink,
        queued_ms: float,
        on_started: Callable[[], None],
    ) -> None:
        self.execution = execution
        self.on_progress = on_progress
        self.queued_ms = queued_ms  # wall clock, as ComfyUI's own timestamps
        self.on_started = on_started

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        """One message; raises JobFailure when it says the prompt failed."""
        if data.get("prompt_id") not in (None, self.execution.prompt_id):
            return
        if kind == "execution_start":
            # ComfyUI's timestamp, not when we read it: /history is read after the run.
            started = data.get("timestamp")
            self.execution.started_ms = started
            start_ms = started if isinstance(started, int | float) else time.time() * 1000
            self.execution.queued_s = max(0.0, (start_ms - self.queued_ms) / 1000)
            self.on_started()
        elif kind == "executing" and data.get("node"):
            self.on_progress(Progress(node=str(data["node"])))
        elif kind == "progress":
            self.on_progress(Progress(str(data.get("node")), data.get("value"), data.get("max")))
        elif kind == "executed":
            for image in (data.get("output") or {}).get("images", []):
                self.execution.images.append((str(data.get("node")), OutputImage(**image)))
        elif kind == "execution_success":
            self.execution.finished_ms = data.get("timestamp")
            self.execution.finished = True
        elif kind == "execution_error":
            raise JobFailure(
                "node_error",
                str(data.get("exception_message") or "the node failed"),
                retryable="OutOfMemory" in str(data.get("exception_type", "")),
                node_id=_text(data.get("node_id")),
                node_type=_text(data.get("node_type")),
            )
        elif kind == "execution_interrupted":
            raise JobFailure("interrupted", "ComfyUI interrupted the prompt", retryable=True)


async def _follow_socket(
    ws: aiohttp.ClientWebSocketResponse, run: _Tracker, limits: Limits
) -> None:
    """Read messages until success; return early (to polling) on silence or a drop."""
    while not run.execution.finished:
        wait = min(limits.inactivity_s, limits.deadline - time.monotonic())
        if wait <= 0:
            return
        try:
            message = await ws.receive(timeout=wait)
        except TimeoutError:
            return
        if message.type is not aiohttp.WSMsgType.TEXT:
            if message.type in (aiohttp.WSMsgType.BINARY,):
                continue  # previews
            return  # closed or broken
        payload = message.json()
        run.apply(str(payload.get("type")), payload.get("data") or {})


async def _poll_history(client: ComfyClient, run: _Tracker, limits: Limits) -> None:
    prompt_id = run.execution.prompt_id
    polls = 0
    while time.monotonic() < limits.deadline:
        try:
            entry = await client.history(prompt_id)
            if entry is not None and _apply_history(run, entry):
                return
            polls += 1
            if (
                entry is None
                and polls % QUEUE_CHECK_EVERY == 0
                and not await client.queue_holds(prompt_id)
            ):
                if (entry := await client.history(prompt_id)) is not None and _apply_history(
                    run, entry
                ):
                    return
                raise comfy_unavailable("ComfyUI lost the prompt (restarted?)")
        except (aiohttp.ClientConnectionError, TimeoutError):
            pass  # the watchdog decides whether ComfyUI is gone
        await asyncio.sleep(limits.poll_interval_s)
    raise JobFailure("timeout", "the job ran past its time limit", retryable=True)


def _apply_history(run: _Tracker, entry: dict[str, Any]) -> bool:
    """Feed a /history entry's messages to the tracker; True once the prompt ended well."""
    status = entry.get("status") or {}
    for kind, data in status.get("messages") or []:
        run.apply(kind, data)  # raises on execution_error / execution_interrupted
    if status.get("status_str") == "success" or status.get("completed"):
        run.execution.finished = True
        run.execution.images = _history_images(entry)
        return True
    return False


def _history_images(entry: dict[str, Any]) -> list[tuple[str, OutputImage]]:
    found = []
    for node_id, output in (entry.get("outputs") or {}).items():
        for image in output.get("images", []):
            found.append((str(node_id), OutputImage(**image)))
    return found


async def _settle_outputs(client: ComfyClient, run: _Tracker, limits: Limits) -> None:
    """The socket's `executed` messages already name every image (each output node reports
    before execution_success); only without them ask /history, which can lag a moment."""
    if run.execution.images:
        return
    deadline = min(limits.deadline, time.monotonic() + limits.history_grace_s)
    while True:
        try:
            entry = await client.history(run.execution.prompt_id)
        except (aiohttp.ClientError, TimeoutError):
            entry = None
        if entry is not None and (images := _history_images(entry)):
            run.execution.images = images
            return
        if time.monotonic() >= deadline:
            return  # the handler reports that nothing was saved
        await asyncio.sleep(HISTORY_RETRY_S)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
