"""`stillhouse master`: wire the dispatcher, the reaper and the HTTP listener; stop
claiming on SIGTERM and hand back what does not finish within the grace period."""

from __future__ import annotations

import asyncio
import logging
import signal
from functools import partial
from pathlib import Path

from aiohttp import web

from master.backends.base import Backend
from master.dispatcher import Dispatcher
from master.metrics import MasterMetrics, make_app
from master.reaper import reap_forever
from stillhouse.config import Settings
from stillhouse.db.engine import make_engine
from stillhouse.hints import SENDS, Hints, make_hints
from stillhouse.ids import new_owner
from stillhouse.lock_metrics import count_degraded_locks
from stillhouse.locks import make_locks
from stillhouse.logs import configure_logging, log_context
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.storage import Storage, make_storage

log = logging.getLogger(__name__)


def make_backend(
    settings: Settings, log_dir: Path, storage: Storage, owner: str = "master"
) -> Backend:
    """The backend the settings name."""
    if settings.master.backend == "runpod":
        from master.backends.runpod import RunPodBackend

        return RunPodBackend(settings.runpod, settings.master.job_timeout_s, owner)
    if settings.master.backend == "preview":
        from master.backends.preview import PreviewBackend
        from stillhouse.models_catalog import ModelCatalog
        from stillhouse.workflows.loader import WorkflowCatalog
        from stillhouse.workflows.node_schemas import NodeSchemas

        catalog = WorkflowCatalog.load(settings.workflows.dir)
        files = {f for w in catalog.workflows.values() for f in w.manifest.model_files()}
        files |= ModelCatalog.load(settings.workflows, catalog).files()  # LoRAs, checkpoints
        return PreviewBackend(storage, NodeSchemas.load(settings.workflows.node_schemas), files)
    from master.backends.local import LocalBackend

    return LocalBackend(
        settings.master.local_workers,
        settings.master.local_plane_host,
        settings.master.local_plane_port,
        log_dir,
        settings.worker.comfy_url,
        settings.worker.concurrency,
    )


async def serve(
    settings: Settings,
    *,
    until_idle: bool = False,
    stop: asyncio.Event | None = None,
    wake: Hints | None = None,
) -> int:
    """Run one master until SIGTERM/SIGINT (or, with until_idle, an empty queue); with
    `stop`, until that is set instead (`stillhouse up` owns the signals)."""
    engine = make_engine(settings)
    wake = wake or make_hints(settings.memcached)
    queue = GenerationQueue(engine, settings.queue, told=partial(wake.bump, SENDS))
    sends = SendQueue(engine, settings.queue)
    locks = make_locks(settings.memcached)
    metrics = MasterMetrics()
    count_degraded_locks(metrics.registry, locks)
    storage = make_storage(settings)
    owner = new_owner("master")
    backend = make_backend(settings, settings.data_dir / "logs", storage, owner)
    dispatcher = Dispatcher(settings, queue, backend, storage, metrics, owner, wake)
    await backend.start()
    watcher: asyncio.Task[None] | None = None
    if stop is None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, dispatcher.stop)
    else:
        watcher = asyncio.create_task(_stop_when(stop, dispatcher), name="stop-watch")
    runner = await _listen(settings, metrics, dispatcher)
    with log_context(master=owner):
        log.info("master started", extra={"action": "master.start", "backend": backend.name})
        dispatch = asyncio.create_task(dispatcher.run(until_idle=until_idle), name="dispatch")
        reaper = asyncio.create_task(
            reap_forever(queue, sends, locks, metrics, settings.master.reap_interval_s, wake),
            name="reaper",
        )
        try:
            await asyncio.wait({dispatch, reaper}, return_when=asyncio.FIRST_COMPLETED)
            if reaper.done():  # it never ends on its own: a bug; stop cleanly, exit non-zero
                log.error(
                    "reaper stopped: %r", reaper.exception(), extra={"action": "master.crash"}
                )
                dispatcher.stop()
                await dispatch
                return 1
            await dispatch
            return 0
        finally:
            for task in (reaper, watcher):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (reaper, watcher) if t), return_exceptions=True)
            await backend.close()
            if runner is not None:
                await runner.cleanup()
            locks.close()
            wake.close()
            engine.dispose()
            log.info("master stopped", extra={"action": "master.stop"})


async def _stop_when(stop: asyncio.Event, dispatcher: Dispatcher) -> None:
    await stop.wait()
    dispatcher.stop()


async def _listen(
    settings: Settings, metrics: MasterMetrics, dispatcher: Dispatcher
) -> web.AppRunner | None:
    if not settings.master.http_port:
        return None
    token = settings.runpod.webhook_token
    app = make_app(
        metrics,
        dispatcher.notify,
        token.get_secret_value() if token else None,
        dispatcher.problem,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.master.http_host, settings.master.http_port).start()
    return runner


def main(settings: Settings, *, until_idle: bool = False) -> int:
    """Entry point for `stillhouse master`."""
    configure_logging(settings)
    return asyncio.run(serve(settings, until_idle=until_idle))
