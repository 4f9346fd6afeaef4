"""The delivery loop: any bot process claims rows of the send queue and tells the user.

A row goes out as a follow-up on the request's interaction while its token lives (not
counted against Discord's global limit), else in the channel with a mention. What Discord
answers decides the row: sent; retried later (429 with its Retry-After, 5xx, network);
or failed at once (missing access, unknown channel: retrying cannot help, and the user
hears nothing more). Leases are renewed while a send is in progress, so a slow send is
never picked up by a second process.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import discord
from sqlalchemy.exc import DBAPIError

from bot import messages
from bot.limiter import GlobalLimiter
from bot.pacing import pause
from bot.views import result_view
from stillhouse.errors import LeaseLost, ObjectNotFound, StillhouseError, StorageError
from stillhouse.logs import log_context
from stillhouse.queue.records import DeliveryRecord
from stillhouse.schemas.jobs import FailurePayload, NoticePayload, ResultPayload
from stillhouse.schemas.manifest import Purpose
from stillhouse.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_FILES = 10  # Discord's limit of attachments per message
DEFAULT_UPLOAD_LIMIT = 10 * 2**20
TOKEN_GONE = {50027, 10015}  # invalid webhook token, unknown webhook: use the channel


class Undeliverable(StillhouseError):
    """Nothing can carry this row to its user."""


@dataclass
class Outgoing:
    """One message, ready for either route."""

    content: str
    images: list[tuple[str, bytes]]
    view: discord.ui.View | None


class DeliveryLoop:
    """Claims send rows and delivers them until stopped."""

    def __init__(
        self, client: discord.Client, services: Services, limiter: GlobalLimiter, owner: str
    ) -> None:
        self._client = client
        self._s = services
        self._limiter = limiter
        self._owner = owner
        self._held: set[int] = set()
        self._settings = services.settings.bot

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim and deliver until `stopping` is set."""
        renewer = asyncio.create_task(self._renew(stopping), name="renew-send-leases")
        try:
            while not stopping.is_set():
                try:
                    rows = await asyncio.to_thread(
                        self._s.sends.claim, self._owner, self._settings.delivery_batch
                    )
                except DBAPIError as exc:
                    log.warning("send queue unreachable: %r", exc, extra={"action": "bot.claim"})
                    await pause(stopping, 2.0)
                    continue
                if not rows:
                    await pause(stopping, self._settings.delivery_interval_s)
                    continue
                await asyncio.gather(*(self.deliver(row) for row in rows))
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def deliver(self, row: DeliveryRecord) -> None:
        """Send one row and record what happened; never raises."""
        self._held.add(row.id)
        try:
            with log_context(job=row.job_public_id):
                await self._settle(row)
        except (DBAPIError, LeaseLost) as exc:
            # The outcome could not be recorded: the lease expires and the row is tried
            # again, which may repeat a message; never silently drop it.
            log.warning("delivery not recorded: %r", exc, extra={"action": "bot.deliver"})
        finally:
            self._held.discard(row.id)

    async def _settle(self, row: DeliveryRecord) -> None:
        sends = self._s.sends
        try:
            message_id = await self._send(row)
        except discord.HTTPException as exc:
            await self._after_refusal(row, exc)
            return
        except (ObjectNotFound, Undeliverable) as exc:
            await self._record(sends.fail, row, str(exc))
            log.warning("undeliverable: %s", exc, extra={"action": "bot.deliver.failed"})
            return
        except (StorageError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            if await self._record(sends.retry, row, repr(exc)):
                log.warning("delivery retried: %r", exc, extra={"action": "bot.deliver.retry"})
                return
            log.warning("delivery failed: %r", exc, extra={"action": "bot.deliver.failed"})
            await self._tell_without_images(row)
            return
        # Sent: recording it must outlast a database outage, or the row would be sent again.
        await self._record(sends.mark_sent, row, message_id)
        log.info("delivered", extra={"action": "bot.deliver.sent", "kind": row.kind})

    async def _tell_without_images(self, row: DeliveryRecord) -> None:
        """The images could not be fetched however long we tried: the user still hears
        that the request finished, rather than nothing."""
        if not isinstance(row.payload, ResultPayload):
            return
        text = messages.undelivered(row.job_public_id)
        try:
            await self._send_outgoing(row, Outgoing(text, [], None))
        except (discord.HTTPException, Undeliverable, aiohttp.ClientError, OSError) as exc:
            log.warning("could not say so either: %r", exc, extra={"action": "bot.deliver.lost"})

    async def _after_refusal(self, row: DeliveryRecord, exc: discord.HTTPException) -> None:
        sends = self._s.sends
        what = f"discord {exc.status} ({exc.code}): {exc.text}"
        if exc.status == 429 or exc.status >= 500:
            delay = _retry_after(exc) if exc.status == 429 else None
            again = await self._record(sends.retry, row, what, delay)
            action = "bot.deliver.retry" if again else "bot.deliver.failed"
            log.warning("discord busy: %s", what, extra={"action": action})
            return
        await self._record(sends.fail, row, what)
        log.warning("discord refused: %s", what, extra={"action": "bot.deliver.failed"})

    async def _record(self, operation: Callable[..., T], *args: Any) -> T:
        """Write what happened to a row, retrying through a database outage while the
        row's lease can still be valid (it is renewed again once the database is back)."""
        delay = 0.2
        give_up = time.monotonic() + self._s.settings.queue.delivery_lease_s
        while True:
            try:
                return await asyncio.to_thread(operation, *args)
            except DBAPIError as exc:
                if time.monotonic() + delay > give_up or (
                    not exc.connection_invalidated and ("connect" not in str(exc.orig).lower())
                ):
                    raise
                log.warning("database unavailable; retrying", extra={"action": "bot.db_retry"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- sending --------------------------------------------------------------------------

    async def _send(self, row: DeliveryRecord) -> int | None:
        outgoing = await self._render(row)
        if outgoing is None:
            return None
        return await self._send_outgoing(row, outgoing)

    async def _send_outgoing(self, row: DeliveryRecord, outgoing: Outgoing) -> int:
        token = row.routing.interaction_token
        expires = row.routing.interaction_expires_at
        if token is not None and expires is not None and self._s.clock() < expires:
            try:
                return await self._follow_up(token.get_secret_value(), outgoing)
            except discord.HTTPException as exc:
                if exc.code not in TOKEN_GONE and exc.status != 401:
                    raise
                log.info("interaction token gone; using the channel", extra={"action": "bot.route"})
        return await self._to_channel(row, outgoing)

    async def _follow_up(self, token: str, outgoing: Outgoing) -> int:
        application_id = self._client.application_id
        assert application_id is not None, "a logged-in client knows its application"
        webhook = discord.Webhook.partial(application_id, token, client=self._client)
        sent = await webhook.send(
            outgoing.content,
            files=_files(outgoing),
            wait=True,
            allowed_mentions=discord.AllowedMentions.none(),
            view=_view(outgoing),
        )
        return int(sent.id)

    async def _to_channel(self, row: DeliveryRecord, outgoing: Outgoing) -> int:
        routing = row.routing
        if routing.channel_id is None:
            raise Undeliverable("the request came from no channel and its token is gone")
        channel = self._client.get_partial_messageable(routing.channel_id)
        await self._limiter.acquire()
        sent = await channel.send(
            messages.with_mention(routing.user_id, outgoing.content),
            files=_files(outgoing),
            allowed_mentions=discord.AllowedMentions(
                everyone=False,
                roles=False,
                users=[discord.Object(routing.user_id)] if routing.user_id else False,
            ),
            view=_view(outgoing),
        )
        return int(sent.id)

    # -- what to say ----------------------------------------------------------------------

    async def _render(self, row: DeliveryRecord) -> Outgoing | None:
        payload = row.payload
        if isinstance(payload, FailurePayload):
            return Outgoing(messages.failure(row.job_public_id, payload), [], None)
        if isinstance(payload, NoticePayload):
            return Outgoing(payload.text, [], None)
        if not isinstance(payload, ResultPayload):
            return None  # progress rows are shown by editing the queued message
        return await self._result(row, payload)

    async def _result(self, row: DeliveryRecord, payload: ResultPayload) -> Outgoing:
        limit = self._upload_limit(row.routing.guild_id)
        attached: list[tuple[str, bytes]] = []
        links: list[str] = []
        total = 0
        for index, image in enumerate(payload.images):
            extension = "png" if image.content_type == "image/png" else "jpg"
            name = f"{row.job_public_id}-{index + 1}.{extension}"
            if len(attached) < MAX_FILES and total + image.bytes <= limit:
                data = await asyncio.to_thread(self._s.storage.get, image.key)
                attached.append((name, data))
                total += len(data)
            else:
                links.append(await asyncio.to_thread(self._s.storage.url, image.key))
        workflow = self._s.catalog.workflows.get(payload.workflow_name)
        title = workflow.manifest.title if workflow else payload.workflow_name
        purpose = workflow.manifest.purpose if workflow else Purpose.UPSCALE
        names = self._s.catalog.workflows
        view = result_view(
            row.job_public_id,
            len(payload.images),
            upscale=purpose is not Purpose.UPSCALE and self._settings.upscale_workflow in names,
            variations=purpose is not Purpose.UPSCALE
            and self._settings.variations_workflow in names,
            reroll=purpose is not Purpose.UPSCALE,
        )
        text = messages.result(row.job_public_id, title, payload.params, links)
        return Outgoing(text, attached, view)

    def _upload_limit(self, guild_id: int | None) -> int:
        guild = self._client.get_guild(guild_id) if guild_id else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def _renew(self, stopping: asyncio.Event) -> None:
        every = self._s.settings.queue.delivery_lease_s / 3
        while not stopping.is_set():
            await pause(stopping, every)
            if self._held:
                try:
                    await asyncio.to_thread(self._s.sends.renew, self._owner, set(self._held))
                except DBAPIError as exc:
                    log.warning("lease renewal failed: %r", exc, extra={"action": "bot.renew"})


def _files(outgoing: Outgoing) -> list[discord.File]:
    return [discord.File(io.BytesIO(data), filename=name) for name, data in outgoing.images]


def _view(outgoing: Outgoing) -> discord.ui.View:
    return discord.utils.MISSING if outgoing.view is None else outgoing.view


def _retry_after(exc: discord.HTTPException) -> float | None:
    header = exc.response.headers.get("Retry-After") if exc.response is not None else None
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None
