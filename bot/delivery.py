"""The delivery loop: any bot process claims rows of the send queue and tells the user.

A row's answer goes out by a route that shows it once however often it is sent (see
bot.routes), so a row whose sender died after Discord took it is simply sent again.
What Discord answers decides the row: sent; retried later (429 with its Retry-After,
5xx, network, the request's message not made yet); or failed at once (missing access,
unknown channel: retrying cannot help). Leases are renewed while a send is in progress,
so a slow send is never picked up by a second process. The loop survives any error: it
is logged and counted (`stillhouse_loop_errors_total{loop="delivery"}`).

The loop's database work runs on threads of its own, and lease renewal on one more: on
asyncio's shared pool they would queue behind a burst of /serve acceptances, and a lease
that lapses while its answer is on the way is an answer sent twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import discord
from sqlalchemy.exc import DBAPIError

from bot import messages
from bot.limiter import GlobalLimiter
from bot.metrics import BotMetrics
from bot.outgoing import Outgoing, render
from bot.pacing import pause
from bot.recent_images import RecentImages
from bot.routes import RetrySoon, Routes, Undeliverable
from stillhouse import hints
from stillhouse.errors import LeaseLost, ObjectNotFound, StorageError
from stillhouse.logs import log_context
from stillhouse.queue.records import DeliveryRecord
from stillhouse.schemas.jobs import FailurePayload, ResultPayload
from stillhouse.services import Services
from stillhouse.storage.over_http import STORE_TIMEOUT, ObjectsOverHttp

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_SOON_S = 1.0
LOOP_RESTART_S = 1.0
DELIVERY_THREADS = 2  # claims and records: short statements, one batch at a time


class DeliveryLoop:
    """Claims send rows and delivers them until stopped."""

    def __init__(
        self,
        client: discord.Client,
        services: Services,
        limiter: GlobalLimiter,
        owner: str,
        metrics: BotMetrics | None = None,
    ) -> None:
        self._client = client
        self._s = services
        self._owner = owner
        self._held: set[int] = set()
        self._settings = services.settings.bot
        self._routes = Routes(client, services, limiter)
        self._metrics = metrics or BotMetrics()
        self._sends_seen: int | None = None
        self._threads = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="delivery")
        # Images are read on the loop, over one kept-alive session (see over_http).
        self._objects = ObjectsOverHttp(services.storage)
        self._store_session: aiohttp.ClientSession | None = None
        self._recent = RecentImages(self._settings.recent_images_mb * 2**20)
        self._lease_thread = ThreadPoolExecutor(1, thread_name_prefix="send-leases")

    async def _blocking(
        self, call: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None
    ) -> T:
        """`call` on the loop's own threads (with this task's log context)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            executor or self._threads, context.run, call, *args
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim and deliver until `stopping` is set (once per loop: its threads end with it)."""
        renewer = asyncio.create_task(self._renew(stopping), name="renew-send-leases")
        try:
            while not stopping.is_set():
                try:
                    rows, fenced = await self._blocking(self._claim)
                except DBAPIError as exc:
                    log.warning("send queue unreachable: %r", exc, extra={"action": "bot.claim"})
                    await pause(stopping, 2.0)
                    continue
                except Exception:  # a bug must not stop delivery in this process unseen
                    self._metrics.loop_errors.labels("delivery").inc()
                    log.exception("claiming send rows failed", extra={"action": "loop.error"})
                    await pause(stopping, LOOP_RESTART_S)
                    continue
                if not rows:
                    await self._idle(stopping, self._settings.delivery_interval_s)
                    continue
                await asyncio.gather(*(self.deliver(row, row.job_id in fenced) for row in rows))
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            self._threads.shutdown(wait=False)
            self._lease_thread.shutdown(wait=False)
            if self._store_session is not None:
                await self._store_session.close()

    def _claim(self) -> tuple[list[DeliveryRecord], dict[int, Any]]:
        """Rows to send and, in the same thread hop, which of them wait for a progress
        edit: one look for the whole batch (their jobs have ended, so no progress edit can
        start now; only one already under way makes a row wait)."""
        rows = self._s.sends.claim(self._owner, self._settings.delivery_batch)
        return rows, self._s.fence.held_until([row.job_id for row in rows])

    async def _idle(self, stopping: asyncio.Event, seconds: float) -> None:
        """Wait `seconds` for the next look, or less: a job's outcome was written (the
        SENDS hint), or the loop is stopping."""
        self._sends_seen = await hints.changed_or_set(
            self._s.hints, hints.SENDS, self._sends_seen, seconds, stopping
        )

    async def deliver(self, row: DeliveryRecord, fenced: bool = True) -> None:
        """Send one row and record what happened; never raises."""
        self._held.add(row.id)
        try:
            with log_context(public_id=row.job_public_id):
                await self._settle(row, fenced)
        except (DBAPIError, LeaseLost) as exc:
            # The outcome could not be recorded: the lease expires and the row is sent
            # again, which its route shows once.
            log.warning("delivery not recorded: %r", exc, extra={"action": "bot.deliver"})
        except Exception:
            self._metrics.loop_errors.labels("delivery").inc()
            log.exception("delivering a row failed", extra={"action": "loop.error"})
        finally:
            self._held.discard(row.id)

    async def _settle(self, row: DeliveryRecord, fenced: bool) -> None:
        sends = self._s.sends
        try:
            message_id = await self._send(row, fenced)
        except discord.HTTPException as exc:
            await self._after_refusal(row, exc)
            return
        except RetrySoon as exc:
            await self._record(sends.retry, row, str(exc), RETRY_SOON_S)
            self._metrics.deliveries.labels("retried").inc()
            return
        except (ObjectNotFound, Undeliverable) as exc:
            await self._record(sends.fail, row, str(exc))
            self._metrics.deliveries.labels("failed").inc()
            log.warning("undeliverable: %s", exc, extra={"action": "bot.deliver.failed"})
            return
        except (StorageError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            if await self._record(sends.retry, row, repr(exc)):
                self._metrics.deliveries.labels("retried").inc()
                log.warning("delivery retried: %r", exc, extra={"action": "bot.deliver.retry"})
                return
            self._metrics.deliveries.labels("failed").inc()
            log.warning("delivery failed: %r", exc, extra={"action": "bot.deliver.failed"})
            await self._tell_without_images(row)
            return
        # Sent: recording it must outlast a database outage, or the row would be sent again.
        await self._record(sends.mark_sent, row, message_id)
        self._metrics.deliveries.labels("sent").inc()
        self._observe_answer(row)
        log.info("delivered", extra={"action": "bot.deliver.sent", "kind": row.kind})

    def _observe_answer(self, row: DeliveryRecord) -> None:
        """Interaction to answer, for the rows that answer a request: its token's expiry
        less the token's lifetime is when the interaction was made."""
        expires = row.routing.interaction_expires_at
        if expires is None or not isinstance(row.payload, ResultPayload | FailurePayload):
            return
        made = expires - timedelta(seconds=self._settings.token_lifetime_s)
        self._metrics.answer_time.observe(max(0.0, (self._s.clock() - made).total_seconds()))

    async def _send(self, row: DeliveryRecord, fenced: bool) -> int | None:
        outgoing = await render(row, self._s, self._client, self._read)
        if outgoing is None:
            return None
        return await self._routes.send(row, outgoing, fenced=fenced)

    async def _read(self, key: str) -> bytes:
        return await self._recent.read(key, self._fetch)

    async def _fetch(self, key: str) -> bytes:
        if self._store_session is None or self._store_session.closed:
            self._store_session = aiohttp.ClientSession(timeout=STORE_TIMEOUT)
        return await self._objects.get(self._store_session, key)

    async def _tell_without_images(self, row: DeliveryRecord) -> None:
        """The images could not be fetched however long we tried: the user still hears
        that the request finished, rather than nothing."""
        if not isinstance(row.payload, ResultPayload):
            return
        text = messages.undelivered(row.job_public_id)
        try:
            await self._routes.send(row, Outgoing(text, [], None))
        except (
            discord.HTTPException,
            Undeliverable,
            RetrySoon,
            aiohttp.ClientError,
            OSError,
        ) as exc:
            log.warning("could not say so either: %r", exc, extra={"action": "bot.deliver.lost"})

    async def _after_refusal(self, row: DeliveryRecord, exc: discord.HTTPException) -> None:
        sends = self._s.sends
        what = f"discord {exc.status} ({exc.code}): {exc.text}"
        if exc.status == 429 or exc.status >= 500:
            delay = _retry_after(exc) if exc.status == 429 else None
            again = await self._record(sends.retry, row, what, delay)
            self._metrics.deliveries.labels("retried" if again else "failed").inc()
            action = "bot.deliver.retry" if again else "bot.deliver.failed"
            log.warning("discord busy: %s", what, extra={"action": action})
            return
        await self._record(sends.fail, row, what)
        self._metrics.deliveries.labels("failed").inc()
        log.warning("discord refused: %s", what, extra={"action": "bot.deliver.failed"})

    async def _record(self, operation: Callable[..., T], *args: Any) -> T:
        """Write what happened to a row, retrying through a database outage while the
        row's lease can still be valid (it is renewed again once the database is back)."""
        delay = 0.2
        give_up = time.monotonic() + self._s.settings.queue.delivery_lease_s
        while True:
            try:
                return await self._blocking(operation, *args)
            except DBAPIError as exc:
                if time.monotonic() + delay > give_up or (
                    not exc.connection_invalidated and ("connect" not in str(exc.orig).lower())
                ):
                    raise
                log.warning("database unavailable; retrying", extra={"action": "bot.db_retry"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _renew(self, stopping: asyncio.Event) -> None:
        every = self._s.settings.queue.delivery_lease_s / 3
        while not stopping.is_set():
            await pause(stopping, every)
            if not self._held:
                continue
            try:
                await self._blocking(
                    self._s.sends.renew, self._owner, set(self._held), executor=self._lease_thread
                )
            except DBAPIError as exc:
                log.warning("lease renewal failed: %r", exc, extra={"action": "bot.renew"})
            except Exception:  # a dead renewer would let every send lease lapse
                self._metrics.loop_errors.labels("delivery-renew").inc()
                log.exception("renewing send leases failed", extra={"action": "loop.error"})


def _retry_after(exc: discord.HTTPException) -> float | None:
    header = exc.response.headers.get("Retry-After") if exc.response is not None else None
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None
