"""The gateway websocket: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME, routing.

Frames are plain JSON text: discord.py asks for zlib-stream but only inflates binary frames.
A guild's events go to every live session whose shard is `(guild_id >> 22) % shard_count`
(so two replicas of one shard both get them); DMs go to shard 0. Events for a session that
dropped without closing cleanly are kept and replayed when it RESUMEs, as Discord does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from tests.doubles.discord import payloads
from tests.doubles.discord.state import Session, State

HEARTBEAT_INTERVAL_MS = 41_250
KEEP_FRAMES = 1000  # per session, for RESUME
INTENT_GUILDS, INTENT_MEMBERS = 1 << 0, 1 << 1
INTENT_GUILD_MESSAGES, INTENT_DM_MESSAGES = 1 << 9, 1 << 12


class Gateway:
    """Serves `/gateway`; `dispatch` routes an event to the sessions that should get it."""

    def __init__(self, state: State, gateway_url: str) -> None:
        self.state = state
        self.url = gateway_url
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._open: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._open.add(ws)
        session: Session | None = None
        try:
            hello = {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["emulator"]}
            await ws.send_str(json.dumps({"op": 10, "d": hello, "s": None, "t": None}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                session = await self._on_frame(ws, session, json.loads(msg.data))
        finally:
            self._open.discard(ws)
            if session is not None and self._sockets.get(session.session_id) is ws:
                del self._sockets[session.session_id]
                with self.state.cond:
                    session.closed, session.close_code = True, ws.close_code
                    # Discord ends a session closed with 1000/1001; other closes may RESUME.
                    session.resumable = session.resumable and ws.close_code not in (1000, 1001)
                    self.state.cond.notify_all()
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, session: Session | None, frame: dict[str, Any]
    ) -> Session | None:
        op, raw = frame.get("op"), frame.get("d")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if op == 1:
            await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        elif op == 2:
            if session is not None:
                await ws.close(code=4005, message=b"Already authenticated.")
                return session
            return await self._identify(ws, data)
        elif op == 6:
            return await self._resume(ws, data)
        elif session is None:
            await ws.close(code=4003, message=b"Not authenticated.")
        elif op == 8:
            await self._chunk(session, data)
        return session  # op 3 (presence) and op 4 (voice) are accepted and ignored

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Session | None:
        state = self.state
        if data.get("token") != state.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard_id, shard_count = data.get("shard") or [0, 1]
        if not 0 <= shard_id < shard_count:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        with state.cond:
            intents = int(data.get("intents", 0))
            session = Session(uuid.uuid4().hex, shard_id, shard_count, intents, state.clock.now())
            state.sessions.append(session)
            guilds = [g for g in state.guilds.values() if session.handles(g.id)]
            ready: dict[str, Any] = {
                "v": 10,
                "user": payloads.bot_user(state),
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.url,
                "application": {"id": str(state.app_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "user_settings": {},
                "auth": {},
                "_trace": ["emulator"],
            }
            if "shard" in data:
                ready["shard"] = [shard_id, shard_count]
            members = bool(intents & INTENT_MEMBERS)
            creates = [payloads.guild_create(state, g, with_members=members) for g in guilds]
        self._sockets[session.session_id] = ws
        # One lock held over READY and every GUILD_CREATE: no injected event overtakes them.
        async with self._lock(session):
            await self._send(session, "READY", ready)
            for create in creates:
                await self._send(session, "GUILD_CREATE", create)
        with state.cond:
            session.guilds_sent = True
            state.cond.notify_all()
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Session | None:
        with self.state.cond:
            found = [s for s in self.state.sessions if s.session_id == data.get("session_id")]
        session = found[0] if found else None
        if session is None or not session.resumable or data.get("token") != self.state.token:
            await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return None
        old = self._sockets.get(session.session_id)
        if old is not None and old is not ws:
            await old.close(code=4000)
        self._sockets[session.session_id] = ws
        with self.state.cond:
            session.closed, session.close_code = False, None
            session.resumes += 1
            missed = [f for f in session.sent if f["s"] > (data.get("seq") or 0)]
        async with self._lock(session):
            for frame in missed:
                await self._write(session, frame)
            await self._send(session, "RESUMED", {"_trace": ["emulator"]})
        return session

    async def _chunk(self, session: Session, data: dict[str, Any]) -> None:
        ids = data.get("guild_id")
        for gid in ids if isinstance(ids, list) else [ids]:
            guild = self.state.guilds.get(int(gid or 0))
            if guild is None or not session.handles(guild.id):
                continue
            with self.state.cond:
                members = [
                    payloads.member(self.state, guild, m)
                    for m in guild.member_ids(self.state.bot_id)
                ]
            chunk = {
                "guild_id": str(guild.id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            async with self._lock(session):
                await self._send(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _lock(self, session: Session) -> asyncio.Lock:
        return self._locks.setdefault(session.session_id, asyncio.Lock())

    async def _send(self, session: Session, event: str, data: dict[str, Any]) -> bool:
        with self.state.cond:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.sent.append(frame)
            del session.sent[:-KEEP_FRAMES]
        return await self._write(session, frame)

    async def _write(self, session: Session, frame: dict[str, Any]) -> bool:
        """Send now if connected (else it waits for a RESUME); record interaction delivery."""
        ws = self._sockets.get(session.session_id)
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(json.dumps(frame))
        except ConnectionError:
            return False
        if frame["t"] == "INTERACTION_CREATE":
            with self.state.cond:
                ix = self.state.interactions.get(int(frame["d"]["id"]))
                if ix is not None:
                    ix._delivered_to.append((session.shard_id, session.shard_count))
                self.state.cond.notify_all()
        return True

    async def dispatch(
        self, guild_id: int | None, event: str, data: dict[str, Any], intent: int | None = None
    ) -> None:
        """Route one event to every session that handles `guild_id` (and has `intent`)."""
        with self.state.cond:
            targets = [
                s
                for s in self.state.sessions
                if s.resumable and s.handles(guild_id) and (intent is None or s.intents & intent)
            ]
        for session in targets:
            async with self._lock(session):
                await self._send(session, event, data)

    async def message_event(self, guild_id: int | None, event: str, data: dict[str, Any]) -> None:
        """MESSAGE_CREATE/UPDATE/DELETE, to sessions with the messages intent."""
        intent = INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DM_MESSAGES
        await self.dispatch(guild_id, event, data, intent)

    async def reconnect(self, shard_id: int | None, *, resumable: bool) -> int:
        """Ask live sessions to reconnect (op 7, they RESUME) or invalidate them (op 9)."""
        count = 0
        with self.state.cond:
            live = [s for s in self.state.sessions if not s.closed]
        for session in live:
            ws = self._sockets.get(session.session_id)
            if ws is None or (shard_id is not None and session.shard_id != shard_id):
                continue
            if not resumable:
                with self.state.cond:
                    session.resumable = False
            frame = {"op": 7 if resumable else 9, "d": None if resumable else False}
            with contextlib.suppress(ConnectionError):
                await ws.send_str(json.dumps({**frame, "s": None, "t": None}))
                count += 1
        return count

    async def close_all(self) -> None:
        for ws in list(self._open):
            await ws.close(code=1001, message=b"The emulator is stopping.")
