"""The double's HTTP and websocket endpoints (aiohttp), shaped like ComfyUI's."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.workflows.loader import WorkflowCatalog
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import GraphError, validate_graph
from tests.doubles.comfy.behaviour import Behaviour
from tests.doubles.comfy.prompt_runner import OUTPUT_NODES, Executor, Prompt, new_prompt_id

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = ROOT / "tests" / "fixtures" / "comfy" / "captures"


def installed_models(behaviour: Behaviour) -> set[str]:
    """The models this ComfyUI "has": the captured one and every shipped workflow's."""
    if behaviour.models:
        return set(behaviour.models)
    models = {"rand-sd15.safetensors"}
    for workflow in WorkflowCatalog.load(ROOT / "workflows").workflows.values():
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
        self.pending: asyncio.Queue[Prompt] = asyncio.Queue()
        self.running: Prompt | None = None
        self.files: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.interrupt_requested = False
        self.number = 0
        self.executor = Executor(behaviour, self)

    # -- websocket ------------------------------------------------------------------------

    async def send(self, client_id: str, message: dict[str, Any]) -> None:
        ws = self.sockets.get(client_id)
        if ws is None or ws.closed or client_id in self.silenced:
            return
        await ws.send_str(json.dumps(message))

    async def broadcast_status(self) -> None:
        remaining = self.pending.qsize() + (1 if self.running else 0)
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
        remaining = self.pending.qsize() + (1 if self.running else 0)
        await ws.send_str(json.dumps(_status(remaining, sid=client_id)))
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
        self.sockets.pop(client_id, None)
        return ws

    # -- HTTP -----------------------------------------------------------------------------

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        graph = body.get("prompt") or {}
        try:
            parsed = ComfyGraph.model_validate(graph)
        except ValueError:
            message = "Cannot execute because a node is missing the class_type property."
            error = {"type": "invalid_prompt", "message": message, "details": "", "extra_info": {}}
            return _json({"error": error, "node_errors": {}}, 400)
        errors = validate_graph(parsed, self.schemas, model_files=self.models)
        if errors:
            return _json(_rejection(graph, errors), 400)
        self.number += 1
        prompt = Prompt(self.number, new_prompt_id(), graph, str(body.get("client_id", "")))
        self.prompts[prompt.prompt_id] = prompt
        await self.pending.put(prompt)
        await self.broadcast_status()
        return _json({"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}})

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
        def item(p: Prompt) -> list[Any]:
            outputs = [n for n, v in p.graph.items() if v["class_type"] in OUTPUT_NODES]
            return [p.number, p.prompt_id, p.graph, {"client_id": p.client_id}, outputs]

        pending = list(self.pending._queue)  # a peek, as ComfyUI's /queue shows
        running = [item(self.running)] if self.running else []
        return _json({"queue_running": running, "queue_pending": [item(p) for p in pending]})

    async def get_view(self, request: web.Request) -> web.Response:
        key = (request.query.get("subfolder", ""), request.query.get("filename", ""))
        data = self.files.get(key)
        if data is None or request.query.get("type", "output") != "output":
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def upload_image(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        assert isinstance(image, web.FileField)
        name = Path(image.filename).name
        self.uploads[name] = image.file.read()
        return _json({"name": name, "subfolder": "", "type": "input"})

    async def interrupt(self, _request: web.Request) -> web.Response:
        if self.running is not None:
            self.interrupt_requested = True
        return web.Response(status=200)

    async def system_stats(self, _request: web.Request) -> web.Response:
        return _json(json.loads((CAPTURES / "system_stats_sample.json").read_text()))

    # -- the queue ------------------------------------------------------------------------

    async def work(self, _app: web.Application) -> Any:
        task = asyncio.create_task(self._loop())
        yield
        task.cancel()

    async def _loop(self) -> None:
        while True:
            prompt = await self.pending.get()
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


def _rejection(graph: dict[str, Any], errors: list[GraphError]) -> dict[str, Any]:
    """ComfyUI's 400 body for the validator's errors."""
    first = errors[0]
    if first.type in ("invalid_prompt", "prompt_no_outputs"):
        return {
            "error": {
                "type": first.type,
                "message": first.message,
                "details": first.details,
                "extra_info": {},
            },
            "node_errors": {},
        }
    outputs = [n for n, v in graph.items() if v.get("class_type") in OUTPUT_NODES]
    node_errors: dict[str, Any] = {}
    for error in errors:
        entry = node_errors.setdefault(
            error.node_id,
            {"errors": [], "dependent_outputs": outputs, "class_type": error.class_type},
        )
        entry["errors"].append(
            {
                "type": error.type,
                "message": error.message,
                "details": error.details,
                "extra_info": {"input_name": error.input},
            }
        )
    return {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": node_errors,
    }


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
