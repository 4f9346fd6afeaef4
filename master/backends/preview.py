"""Preview mode: no ComfyUI, no GPU. Each job's graph is checked against the node schemas
exactly as the worker's ComfyUI would check it, and a placeholder image showing the
prompt, workflow and seed is stored in its place, so the whole path (front, queue,
master, storage, delivery) can be seen working in seconds on any laptop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from master.backends.base import Phase, Poll
from master.backends.placeholder import placeholder
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
from stillhouse.storage.base import new_key
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import validate_graph

VERSION = "preview"
MAX_SIDE = 1024


class PreviewBackend:
    """Answers every job itself: validation, then a labelled placeholder per image."""

    name = "preview"

    def __init__(
        self, storage: Storage, schemas: NodeSchemas, model_files: Collection[str] = ()
    ) -> None:
        self.capacity: int | None = None
        self._storage = storage
        self._schemas = schemas
        # A snapshot lists no model files (they are the machine's); the workflows declare
        # theirs, exactly what `stillhouse workflows check` accepts.
        self._model_files = frozenset(model_files)
        self._runs: dict[str, asyncio.Task[Poll]] = {}

    async def submit(self, request: WorkerInput) -> str:
        job_id = f"preview-{uuid.uuid4().hex}"
        self._runs[job_id] = asyncio.create_task(asyncio.to_thread(self._run, request))
        return job_id

    async def poll(self, backend_job_id: str) -> Poll:
        run = self._runs.get(backend_job_id)
        if run is None:
            error = ErrorInfo(type="lost", message="the preview lost the job", retryable=True)
            return Poll(phase=Phase.LOST, error=error)
        if not run.done():
            return Poll(phase=Phase.RUNNING)
        del self._runs[backend_job_id]
        return run.result()

    async def cancel(self, backend_job_id: str) -> None:
        run = self._runs.pop(backend_job_id, None)
        if run is not None:
            run.cancel()

    async def health(self) -> dict[str, Any]:
        return {"mode": "preview", "running": len(self._runs)}

    def watch(self, notify: Callable[[str], None]) -> None:
        """Its jobs are done by the first look."""

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        for run in self._runs.values():
            run.cancel()

    def _run(self, request: WorkerInput) -> Poll:
        started = time.perf_counter()
        errors = validate_graph(request.workflow, self._schemas, model_files=self._model_files)
        if errors:
            first = errors[0]
            return Poll(
                phase=Phase.FAILED,
                error=ErrorInfo(
                    type="invalid_graph",
                    message=first.describe(),
                    node_id=first.node_id or None,
                    node_type=first.class_type,
                    retryable=False,
                ),
            )
        facts = _facts(request.workflow)
        checked = time.perf_counter()
        images = [
            self._store(request, facts, index)
            for index in range(max(1, int(facts.get("batch_size", 1))))
        ]
        done = time.perf_counter()
        return Poll(
            phase=Phase.COMPLETED,
            output=WorkerOutput(
                images=images,
                timings=Timings(
                    execute_ms=(checked - started) * 1000, upload_ms=(done - checked) * 1000
                ),
                comfy=ComfyInfo(prompt_id=request.job_id, version=VERSION),
            ),
        )

    def _store(self, request: WorkerInput, facts: dict[str, Any], index: int) -> ImageRef:
        width = min(MAX_SIDE, int(facts.get("width", 512)))
        height = min(MAX_SIDE, int(facts.get("height", 512)))
        data = placeholder(width, height, request.workflow_name, facts, index)
        key = new_key(request.output.prefix, request.job_id, "png")
        stored = self._storage.put(key, data, "image/png")
        return ImageRef(
            key=key,
            bucket=stored.bucket,
            content_type="image/png",
            width=width,
            height=height,
            bytes=stored.bytes,
            sha256=stored.sha256,
            node_id="preview",
        )


def _facts(graph: ComfyGraph) -> dict[str, Any]:
    """Prompt, seed and size as the graph holds them (whatever the node ids): the prompt
    is the text feeding a sampler's `positive` input, else the first text encoder's."""
    facts: dict[str, Any] = {}
    texts: list[str] = []
    for node in graph.root.values():
        inputs = node.inputs
        if isinstance(inputs.get("text"), str):
            texts.append(inputs["text"])
        positive = inputs.get("positive")
        if isinstance(positive, list) and positive:
            source = graph.root.get(str(positive[0]))
            if source is not None and isinstance(source.inputs.get("text"), str):
                facts["prompt"] = source.inputs["text"]
        for name in ("seed", "noise_seed", "width", "height", "batch_size"):
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                facts.setdefault("seed" if name == "noise_seed" else name, value)
    if "prompt" not in facts and texts:
        facts["prompt"] = texts[0]
    return facts
