"""The double's HTTP and websocket endpoints (aiohttp), shaped like ComfyUI's."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import posixpath
import sys
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from stillhouse.workflows.loader import WorkflowCatalog
from stillhouse.workflows.node_schemas import NodeSchemas
from tests.doubles.comfy.behaviour import Behaviour
from tests.doubles.comfy.folders import FOLDER_TYPES, Folder, Folders, relative
from tests.doubles.comfy.prompt_runner import Executor, Prompt, new_prompt_id
from tests.doubles.comfy.validation import check_prompt

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = ROOT / "tests" / "fixtures" / "comfy" / "captures"


def installed_models(behaviour: Behaviour) -> set[str]:
    """The models this ComfyUI "has": the captured one and every shipped workflow's."""
    if behaviour.models:
        return set(behaviour.models)
    models = {"rand-sd15.safetensors"}
    for workflow in WorkflowCatalog.load().workflows.values():
        models |= workflow.manifest.model_files()
    return models


class ComfyDouble:
    """State shared by the routes and the executor."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.schemas = NodeSchemas.load()
        self.models = installed_models(behaviour)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.silenced: set[str] = set()
        self.prompts: dict[str, Prompt] = {}
        self.history_visible: set[str] = set()
        self.pending: list[Prompt] = []  # in number order, as ComfyUI's heap pops them
        self.queued = asyncio.Event()
        self.running: Prompt | None = None
        self.folders = Folders.from_flags(
            behaviour.base_directory,
            behaviour.output_directory,
            behaviour.input_directory,
            behaviour.temp_directory,
        )
        self.interrupt_requested = False
        self.number = 0
        self.executor = Executor(behaviour, self)

    def read_input(self, name: str) -> bytes | None:
        """A LoadImage's file: `sub/name.png` in input, or `name.png [output]` and the like
        (folder_paths.get_annotated_filepath)."""
        folder, name = _annotated(name, self.folders)
        place = relative(name)
        return None if place is None else (folder or self.folders.input).read(place)

    # -- websocket ------------------------------------------------------------------------

    async def send(self, client_id: str, message: dict[str, Any]) -> None:
        ws = self.sockets.get(client_id)
        if ws is None or ws.closed or client_id in self.silenced:
            return
        await ws.send_str(json.dumps(message))

    async def broadcast_status(self) -> None:
        remaining = len(self.pending) + (1 if self.running else 0)
        for client_id in list(self.sockets):
            await self.send(client_id, _status(remaining))

    def silence_clients(self, client_id: str) -> None:
        if self.behaviour.silent_ws:
            self.silenced.add(client_id)
        if self.behaviour.drop_ws and (ws := self.sockets.get(client_id)) is not None:
            asyncio.get_running_loop().create_task(ws.close())

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.query.get("clientId") or new_prompt_id().replace("-", "")
        self.sockets[client_id] = ws
        remaining = len(self.pending) + (1 if self.running else 0)
        await ws.send_str(json.dumps(_status(remaining, sid=client_id)))
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
        self.sockets.pop(client_id, None)
        return ws

    # -- HTTP -----------------------------------------------------------------------------

    async def post_prompt(self, request: web.Request) -> web.Response:
        """server.py `post_prompt`: 400 unless some output is valid; else queue the valid
        outputs and answer 200 with the failed outputs' `node_errors`."""
        body = await request.json()
        if "prompt" not in body:
            error = _error("no_prompt", "No prompt provided", "No prompt provided")
            return _json({"error": error, "node_errors": {}}, 400)
        graph = body["prompt"]
        verdict = check_prompt(graph, self.schemas, self.models)
        if not verdict.outputs:
            return _json({"error": verdict.error, "node_errors": verdict.node_errors}, 400)
        self.number += 1
        prompt = Prompt(
            self.number,
            new_prompt_id(),
            graph,
            str(body.get("client_id", "")),
            outputs_to_execute=verdict.outputs,
        )
        self.prompts[prompt.prompt_id] = prompt
        self.pending.append(prompt)
        self.queued.set()
        await self.broadcast_status()
        return _json(
            {
                "prompt_id": prompt.prompt_id,
                "number": prompt.number,
                "node_errors": verdict.node_errors,
            }
        )

    async def post_queue(self, request: web.Request) -> web.Response:
        """server.py `post_queue`: `{"clear": true}` empties the pending queue, `{"delete":
        [ids]}` removes those pending prompts; the running one is left alone."""
        body = await request.json()
        dropped: list[Prompt] = []
        if body.get("clear"):
            dropped, self.pending = self.pending, []
        for prompt_id in body.get("delete", []):
            dropped += [p for p in self.pending if p.prompt_id == prompt_id]
            self.pending = [p for p in self.pending if p.prompt_id != prompt_id]
        for prompt in dropped:
            self.prompts.pop(prompt.prompt_id, None)  # never run: no history either
        if dropped:
            await self.broadcast_status()
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        prompt = self.prompts.get(prompt_id)
        if prompt is None or prompt_id not in self.history_visible:
            return _json({})
        return _json({prompt_id: prompt.history()})

    async def get_all_history(self, request: web.Request) -> web.Response:
        """`GET /history[?max_items=N]`: every finished prompt, as ComfyUI keeps them."""
        shown = [p for p in self.prompts.values() if p.prompt_id in self.history_visible]
        if request.query.get("max_items", "").isdigit():
            shown = shown[-int(request.query["max_items"]) :]
        return _json({p.prompt_id: p.history() for p in shown})

    async def get_queue(self, _request: web.Request) -> web.Response:
        running = [self.running.queue_item()] if self.running else []
        pending = [p.queue_item() for p in self.pending]
        return _json({"queue_running": running, "queue_pending": pending})

    async def get_view(self, request: web.Request) -> web.Response:
        """server.py `view_image`: a file of output, input or temp (`type`, default output),
        400 for a bad name or type, 403 for a subfolder outside, 404 for no such file."""
        query = request.query
        if "filename" not in query:
            return web.Response(status=404)
        folder, filename = _annotated(query["filename"], self.folders)
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        folder = folder or self.folders.by_type(query.get("type", "output"))
        if folder is None:
            return web.Response(status=400)
        subfolder = relative(query.get("subfolder", ""))
        if subfolder is None:
            return web.Response(status=403)
        name = posixpath.basename(filename)
        data = folder.read(relative(subfolder, name) or name)
        if data is None:
            return web.Response(status=404)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {"Content-Disposition": f'filename="{name}"'}
        return web.Response(body=data, content_type=content_type, headers=headers)

    async def upload_image(self, request: web.Request) -> web.Response:
        """server.py `image_upload`: into `type`'s folder (default input) and `subfolder`;
        an existing name gets ` (1)`, ` (2)` ... unless `overwrite` or the same bytes."""
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        kind = str(form.get("type") or "input")
        folder = self.folders.by_type(kind)
        if folder is None:
            return web.Response(status=500)  # ComfyUI fails on an unknown type likewise
        filename, subfolder = image.filename, str(form.get("subfolder", ""))
        place = relative(subfolder, filename)
        if place is None:
            return web.Response(status=400)
        data = image.file.read()
        if str(form.get("overwrite")) not in ("true", "1"):
            stem, extension = posixpath.splitext(filename)
            number = 1
            while folder.exists(place) and folder.read(place) != data:
                filename = f"{stem} ({number}){extension}"
                place = relative(subfolder, filename) or filename
                number += 1
        if folder.read(place) != data:
            folder.write(place, data)
        return _json({"name": filename, "subfolder": subfolder, "type": kind})

    async def interrupt(self, request: web.Request) -> web.Response:
        # ComfyUI 0.3.64: with a prompt_id, only that prompt, and only while it runs.
        try:
            body = await request.json()
        except ValueError:
            body = {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        running = self.running
        if running is not None and wanted in (None, running.prompt_id):
            self.interrupt_requested = True
        return web.Response(status=200)

    async def system_stats(self, _request: web.Request) -> web.Response:
        return _json(json.loads((CAPTURES / "system_stats_sample.json").read_text()))

    # -- the queue ------------------------------------------------------------------------

    async def work(self, _app: web.Application) -> Any:
        self.folders.start()  # before it listens, as ComfyUI's main.py cleans temp
        task = asyncio.create_task(self._loop())
        yield
        task.cancel()
        self.folders.stop()

    async def _loop(self) -> None:
        while True:
            while not self.pending:
                self.queued.clear()
                await self.queued.wait()
            prompt = self.pending.pop(0)
            self.running = prompt
            await self.broadcast_status()
            await self.executor.run(prompt)
            self.running = None
            self.interrupt_requested = False
            asyncio.get_running_loop().call_later(
                self.behaviour.history_lag_s, self.history_visible.add, prompt.prompt_id
            )
            await self.broadcast_status()


def make_app(behaviour: Behaviour) -> web.Application:
    double = ComfyDouble(behaviour)
    app = web.Application(client_max_size=64 * 2**20)
    app.cleanup_ctx.append(double.work)
    app.add_routes(
        [
            web.get("/ws", double.websocket),
            web.post("/prompt", double.post_prompt),
            web.get("/history", double.get_all_history),
            web.get("/history/{prompt_id}", double.get_history),
            web.get("/queue", double.get_queue),
            web.post("/queue", double.post_queue),
            web.get("/view", double.get_view),
            web.post("/upload/image", double.upload_image),
            web.post("/interrupt", double.interrupt),
            web.get("/system_stats", double.system_stats),
        ]
    )
    return app


def _status(remaining: int, sid: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": remaining}}}
    if sid is not None:
        data["sid"] = sid
    return {"type": "status", "data": data}


def _annotated(name: str, folders: Folders) -> tuple[Folder | None, str]:
    """folder_paths.annotated_filepath: `name.png [temp]` names its folder."""
    for kind in FOLDER_TYPES:
        if name.endswith(f"[{kind}]"):
            return folders.by_type(kind), name[: -len(f" [{kind}]")]
    return None, name


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    """Start (or refuse to start, or start late) as the behaviour says."""
    behaviour = Behaviour.from_args(argv)
    if behaviour.die_on_start:
        print("RuntimeError: CUDA error: no kernel image is available", file=sys.stderr)
        sys.exit(3)
    if behaviour.start_delay_s:
        import time

        time.sleep(behaviour.start_delay_s)  # a slow start: alive but not listening yet
    web.run_app(make_app(behaviour), host="127.0.0.1", port=behaviour.port, print=None)
