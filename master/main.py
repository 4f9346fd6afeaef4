"""`stillhouse master`: wire the dispatcher, the reaper and the HTTP listener; stop
claiming on SIGTERM and hand back what does not finish within the grace period."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from master.backends.base import Backend
from master.dispatcher import Dispatcher
from master.metrics import MasterMetrics, make_app
from master.reaper import reap_forever
from stillhouse.config import Settings
from stillhouse.db.engine import make_engine
from stillhouse.ids import new_owner
from stillhouse.locks import make_locks
from stillhouse.logs import configure_logging, log_context
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.storage import make_storage

log = logging.getLogger(__name__)


def make_backend(settings: Settings, log_dir: Path) -> Backend:
    """The backend the settings name."""
    if settings.master.backend == "runpod":
        from master.backends.runpod import RunPodBackend

        return RunPodBackend(settings.runpod, settings.master.job_timeout_s)
    from master.backends.local import LocalBackend

    return LocalBackend(
        settings.master.local_workers,
        settings.master.local_worker_port,
        log_dir,
        settings.worker.comfy_url,
    )


async def serve(settings: Settings, *, until_idle: bool = False) -> int:
    """Run one master until SIGTERM/SIGINT (or, with until_idle, an empty queue)."""
    engine = make_engine(settings)
    queue = GenerationQueue(engine, settings.queue)
    sends = SendQueue(engine, settings.queue)
    locks = make_locks(settings.memcached)
    metrics = MasterMetrics()
    backend = make_backend(settings, settings.data_dir / "logs")
    owner = new_owner("master")
    dispatcher = Dispatcher(settings, queue, backend, make_storage(settings), metrics, owner)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, dispatcher.stop)
    runner = await _listen(settings, metrics, dispatcher)
    with log_context(master=owner):
        log.info("master started", extra={"action": "master.start", "backend": backend.name})
        dispatch = asyncio.create_task(dispatcher.run(until_idle=until_idle), name="dispatch")
        reaper = asyncio.create_task(
            reap_forever(queue, sends, locks, metrics, settings.master.reap_interval_s),
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
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
            await backend.close()
            if runner is not None:
                await runner.cleanup()
            locks.close()
            engine.dispose()
            log.info("master stopped", extra={"action": "master.stop"})


async def _listen(
    settings: Settings, metrics: MasterMetrics, dispatcher: Dispatcher
) -> web.AppRunner | None:
    if not settings.master.http_port:
        return None
    token = settings.runpod.webhook_token
    app = make_app(metrics, dispatcher.notify, token.get_secret_value() if token else None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.master.http_host, settings.master.http_port).start()
    return runner


def main(settings: Settings, *, until_idle: bool = False) -> int:
    """Entry point for `stillhouse master`."""
    configure_logging(settings)
    return asyncio.run(serve(settings, until_idle=until_idle))
