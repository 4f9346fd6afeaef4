"""`stillhouse up`: the whole system in one process on embedded defaults — SQLite queue,
in-process locks, a local image folder, a master with a local worker (or the preview),
the HTTP API with its playground, and the Discord bot when DISCORD_TOKEN is set.

Which worker: ComfyUI at COMFYUI_URL, or started from COMFYUI_DIR; `--install-comfy`
installs one with comfy-cli first (internet needed); with none of these, preview mode
checks each graph and draws a labelled placeholder instead of running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from stillhouse.config import Settings, make_settings, safe_database_url
from stillhouse.db.engine import make_engine
from stillhouse.db.migrate import upgrade
from stillhouse.logs import configure_logging
from stillhouse.workflows.loader import WorkflowCatalog

PREVIEW_BANNER = "PREVIEW MODE - no ComfyUI: graphs are checked, images are placeholders"


@dataclass
class Plan:
    """What `up` will start, decided before anything starts."""

    worker: str  # a sentence for the console
    preview: bool


@click.command()
@click.option("--host", default=None, help="API address (default 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="API port (8080)")
@click.option(
    "--install-comfy", is_flag=True, help="install ComfyUI and a default model (needs internet)"
)
def up(host: str | None, port: int | None, install_comfy: bool) -> None:
    """Everything in one process on embedded defaults (SQLite, local files)."""
    plan = _configure(host, port, install_comfy)
    configured = make_settings()
    listener = _listen(configured.api.host, configured.api.port)
    _publish_port(configured, int(listener.getsockname()[1]))
    settings = make_settings()  # with the real port (`--port 0` picks one) and image URLs
    configure_logging(settings)
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    sys.exit(asyncio.run(_run(settings, plan, listener)))


def _configure(host: str | None, port: int | None, install_comfy: bool) -> Plan:
    """Embedded defaults into the environment (worker processes inherit them)."""
    env = os.environ
    env.setdefault("STILLHOUSE_LOG__FORMAT", "text")
    if host:
        env["STILLHOUSE_API__HOST"] = host
    if port is not None:
        env["STILLHOUSE_API__PORT"] = str(port)
    env.setdefault("STILLHOUSE_MASTER__HTTP_PORT", "0")
    env.setdefault("STILLHOUSE_MASTER__CLAIM_INTERVAL_S", "0.2")
    env.setdefault("STILLHOUSE_MASTER__POLL_INTERVAL_S", "0.2")
    env.setdefault("STILLHOUSE_MASTER__LOCAL_PLANE_PORT", "0")  # any free port: no clashes
    if env.get("DISCORD_TOKEN"):
        env.setdefault("STILLHOUSE_BOT__TOKEN", env["DISCORD_TOKEN"])
    if install_comfy:
        from stillhouse.commands.comfy_install import install

        workspace = install(Path(env.get("STILLHOUSE_DATA_DIR", ".stillhouse")) / "comfyui")
        env["STILLHOUSE_WORKER__COMFY_WORKSPACE"] = str(workspace)
        env["STILLHOUSE_MASTER__BACKEND"] = "local"
        return Plan(f"ComfyUI installed in {workspace}, started by a local worker", False)
    if env.get("COMFYUI_URL"):
        env["STILLHOUSE_WORKER__COMFY_URL"] = env["COMFYUI_URL"]
        env["STILLHOUSE_MASTER__BACKEND"] = "local"
        return Plan(f"a local worker using the ComfyUI at {env['COMFYUI_URL']}", False)
    if env.get("COMFYUI_DIR"):
        env["STILLHOUSE_WORKER__COMFY_DIR"] = env["COMFYUI_DIR"]
        env["STILLHOUSE_MASTER__BACKEND"] = "local"
        return Plan(f"a local worker starting ComfyUI from {env['COMFYUI_DIR']}", False)
    env.setdefault("STILLHOUSE_MASTER__BACKEND", "preview")
    if env["STILLHOUSE_MASTER__BACKEND"] != "preview":
        return Plan(f"the {env['STILLHOUSE_MASTER__BACKEND']} backend", False)
    return Plan(
        f"{PREVIEW_BANNER}\n             (set COMFYUI_URL or COMFYUI_DIR, or run with "
        "--install-comfy, for real images)",
        True,
    )


def _listen(host: str, port: int) -> socket.socket:
    """The API's socket, listening before anything starts and handed to uvicorn as it is:
    a taken port fails at once, and no one can take it between a check and a bind."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    if os.name == "posix":
        # As uvicorn and asyncio do: a restart right after Ctrl+C binds past the last run's
        # TIME_WAIT connections; a port another process listens on is still refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is taken; run `stillhouse up --port <another>` "
                "(--port 0 picks a free one)"
            ) from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
    return sock


def _publish_port(settings: Settings, port: int) -> None:
    """The port really listened on, into the environment (worker processes inherit it),
    and into the base of image URLs unless one is configured."""
    os.environ["STILLHOUSE_API__PORT"] = str(port)
    if "public_base_url" not in settings.storage.model_fields_set:
        base = f"http://{_url_host(settings.api.host)}:{port}/files"
        os.environ["STILLHOUSE_STORAGE__PUBLIC_BASE_URL"] = base


def _url_host(host: str) -> str:
    """How a browser on this machine reaches `host`."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - every address: this machine's will do
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


async def _run(settings: Settings, plan: Plan, listener: socket.socket) -> int:
    import uvicorn

    from api.app import make_app

    class _QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # `up` owns SIGINT/SIGTERM and stops the server itself

    from master.main import serve as serve_master
    from stillhouse.services import Services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    services = Services.build(settings)
    server = _QuietServer(
        uvicorn.Config(
            make_app(services, banner=PREVIEW_BANNER if plan.preview else None),
            host=settings.api.host,
            port=settings.api.port,
            log_config=None,
            access_log=False,
        )
    )
    tasks = [
        # One process: the API's enqueue wakes the master through shared in-process hints.
        asyncio.create_task(serve_master(settings, stop=stop, wake=services.hints), name="master"),
        asyncio.create_task(server.serve(sockets=[listener]), name="api"),
    ]
    bot = None
    if settings.bot.token is not None:
        from bot.client import StillhouseBot

        bot = StillhouseBot(services)
        tasks.append(asyncio.create_task(bot.start(settings.bot.token.get_secret_value())))
    while not server.started and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    if server.started:
        _banner(settings, plan, bot is not None, services.catalog)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    click.echo("stillhouse: stopping...", err=True)
    stop.set()
    server.should_exit = True
    if bot is not None:
        await bot.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    listener.close()  # uvicorn closes it too, but not when it never started
    services.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    for failure in failed:
        click.echo(f"stillhouse: {failure!r}", err=True)
    return 1 if failed or not server.started else 0


def _banner(settings: Settings, plan: Plan, bot: bool, catalog: WorkflowCatalog) -> None:
    api = settings.api
    base = f"http://{_url_host(api.host)}:{api.port}"
    lines = [
        "stillhouse is up, everything in this one process:",
        f"  database   {safe_database_url(settings.database_url())}",
        f"  images     {settings.images_dir() if settings.storage.backend == 'local' else 's3'}",
        f"  worker     {plan.worker}",
        *workflow_lines(catalog),
        f"  api        {base}/v1  (reference: {base}/docs)",
        f"  playground {base}/",
        f"  bot        {'connected to Discord' if bot else 'off (set DISCORD_TOKEN to run it)'}",
        "Try it:",
        f"  curl -s -X POST {base}/v1/generations -H 'Content-Type: application/json' "
        '-d \'{"prompt": "a lighthouse at dawn"}\'',
        "Stop with Ctrl+C.",
    ]
    click.echo("\n".join(lines))


def workflow_lines(catalog: WorkflowCatalog) -> list[str]:
    """The banner's workflow lines: how many loaded and from where, then each problem."""
    if catalog.workflows:
        lines = [f"  workflows  {catalog.summary()}"]
    else:
        lines = [
            "  workflows  NONE LOADED - every request will fail until one does "
            "(see the problems below; STILLHOUSE_WORKFLOWS__DIR names your own folder)"
        ]
    lines += [f"  problem    {problem}" for problem in catalog.problems]
    return lines
