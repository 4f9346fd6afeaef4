"""The double's own test routes (`/_test/…`), for tests that run it as a process, and the
kill-next-submitter hook (a chaos test kills a master inside its submit window: after
RunPod accepted `/run`, before the master stored the job id).

A master's RunPod requests carry `User-Agent: stillhouse/<version> (<owner>)`, the owner
`master-<hostname>-<pid>-<12 hex>`; the hostname may hold dashes, so the pid is read from
the right.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.doubles.runpod.state import Fate, executions

if TYPE_CHECKING:
    from tests.doubles.runpod.server import RunPodDouble

_OWNER = re.compile(r"\(([^()]*)\)")


def submitter_pid(user_agent: str) -> int | None:
    """The master's pid from its User-Agent; None when there is no owner to read (or it is
    this very process: the double never kills the tests that run it)."""
    match = _OWNER.search(user_agent)
    if match is None:
        return None
    parts = match.group(1).strip().rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    pid = int(parts[1])
    return pid if pid > 1 and pid != os.getpid() else None


def kill_group(pid: int) -> None:
    """SIGKILL the submitter's process group (masters are started as group leaders);
    only the process itself when that group is ours or cannot be read."""
    try:
        group: int | None = os.getpgid(pid)
    except OSError:
        group = None
    with contextlib.suppress(ProcessLookupError):
        if group is None or group == os.getpgid(0):
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(group, signal.SIGKILL)


def control_routes(double: RunPodDouble) -> list[web.RouteDef]:
    """`GET /_test/jobs|kills|requests|executions`, `POST /_test/kill-next-submitter|
    fail-next|hang-next|plan` (the last three take the `fail_next`/`hang_next`/`plan`
    arguments as JSON)."""
    state = double.state

    async def jobs(_request: web.Request) -> web.Response:
        every = [*state.jobs.values(), *state.lost_jobs.values()]
        every.sort(key=lambda j: j.created_wall)
        return web.json_response([j.listing() for j in every])

    async def kills(_request: web.Request) -> web.Response:
        return web.json_response(state.kills)

    async def requests(_request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in state.requests])

    async def execution_counts(_request: web.Request) -> web.Response:
        return web.json_response(executions([*state.jobs.values(), *state.lost_jobs.values()]))

    async def arm(_request: web.Request) -> web.Response:
        double.arm_kill_next_submitter()
        return web.json_response({"armed": True})

    async def fail_next(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        double.fail_next(**body)
        return web.json_response({"planned": True})

    async def hang_next(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        double.hang_next(**body)
        return web.json_response({"planned": True})

    async def plan(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        double.plan(*(Fate(f) for f in body["fates"]))
        return web.json_response({"planned": True})

    return [
        web.get("/_test/jobs", jobs),
        web.get("/_test/kills", kills),
        web.get("/_test/requests", requests),
        web.get("/_test/executions", execution_counts),
        web.post("/_test/kill-next-submitter", arm),
        web.post("/_test/fail-next", fail_next),
        web.post("/_test/hang-next", hang_next),
        web.post("/_test/plan", plan),
    ]
