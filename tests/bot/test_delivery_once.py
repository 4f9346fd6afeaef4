"""Exactly one visible answer per request, whenever a bot process dies.

A real bot process is SIGKILLed by an emulator hook the moment Discord has taken its
answer and before the process can record it; another bot process then delivers the row
again after its lease. The answer's route shows it once: the request's own message is
replaced (an edit), or, once the token is gone, a channel post is found in the channel's
history or deduplicated by its nonce. A progress edit that lands late never overwrites
the answer.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine

from stillhouse.config import QueueSettings, StorageSettings
from stillhouse.ids import new_owner
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.fences import MessageFence
from stillhouse.schemas.states import DeliveryStatus
from stillhouse.services import Services
from stillhouse.storage.local import LocalStorage
from tests.bot.conftest import REPO
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    USER,
    queued_id,
    running_bot,
    stored_result,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator, GuildSpec, WriteEvent
from tests.master.cluster import base_env
from tests.support import new_job, wait_until

pytestmark = pytest.mark.slow
LEASE_S = 2.0
NO_HISTORY = CHANNEL + 50


@dataclasses.dataclass
class Bots:
    """Bot processes on the emulator, the queues they share, and a killer hook."""

    emu: DiscordEmulator
    url: str
    engine: Engine
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def start(self, **settings: str) -> subprocess.Popen[bytes]:
        env = {
            **base_env(),
            "STILLHOUSE_DATABASE__URL": self.url,
            "STILLHOUSE_BOT__TOKEN": self.emu.token,
            "STILLHOUSE_STORAGE__BACKEND": "local",
            "STILLHOUSE_STORAGE__LOCAL_DIR": str(self.tmp / "images"),
            "STILLHOUSE_DATA_DIR": str(self.tmp / "data"),
            "STILLHOUSE_LOG__FORMAT": "text",
            "STILLHOUSE_QUEUE__DELIVERY_LEASE_S": str(LEASE_S),
            "STILLHOUSE_BOT__DELIVERY_INTERVAL_S": "0.05",
            **{f"STILLHOUSE_{k.upper()}": v for k, v in settings.items()},
        }
        command = [sys.executable, "-m", "tests.bot.bot_process", self.emu.api_base]
        before = len(self.emu.sessions)
        with (self.tmp / f"bot-{len(self.processes)}.log").open("ab") as log:
            process = subprocess.Popen(
                [*command, self.emu.gateway_url],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)

        def connected() -> bool:
            sessions = self.emu.sessions
            return len(sessions) > before and sessions[-1].guilds_sent

        wait_until(connected, 60, what="the bot connected")
        wait_until(lambda: self.emu.commands.get(None), 60, what="commands synced")
        return process

    def kill_on_first(self, kind: str, public_id: str) -> list[int]:
        """SIGKILL the sender of the first `kind` write answering `public_id`, after the
        emulator applied it and before the sender hears back. The pids killed."""
        killed: list[int] = []
        sends = SendQueue(self.engine, QueueSettings())

        def hook(event: WriteEvent) -> None:
            if killed or event.kind != kind or f"`{public_id}`" not in event.message.content:
                return
            if not event.message.attachments:
                return  # a progress edit, not the answer
            job = GenerationQueue(self.engine, QueueSettings()).get(public_id)
            assert job is not None
            [row] = sends.for_job(job.id)
            assert row.lease_owner is not None
            pid = int(row.lease_owner.rsplit("-", 2)[1])
            os.killpg(pid, signal.SIGKILL)
            killed.append(pid)

        self.emu.after_write(hook)
        return killed

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture
def once_emu() -> Iterator[DiscordEmulator]:
    spec = GuildSpec(
        id=GUILD,
        channel_ids=[CHANNEL, NO_HISTORY],
        member_ids=[USER],
        no_history_channel_ids=[NO_HISTORY],
    )
    with DiscordEmulator(guilds=[spec]) as emulator:
        yield emulator


@pytest.fixture
def bots(
    once_emu: DiscordEmulator, mariadb_url: str, mariadb_engine: Engine, tmp_path: Path
) -> Iterator[Bots]:
    made = Bots(once_emu, mariadb_url, mariadb_engine, tmp_path)
    yield made
    made.stop()


def complete(bots: Bots, public_id: str) -> None:
    """The master's part: the job succeeds with one image the bots can read."""
    queue = GenerationQueue(bots.engine, QueueSettings())
    owner = new_owner("test-master")
    [job] = wait_until(lambda: [j for j in queue.claim(owner, 50) if j.public_id == public_id])
    result, _ = stored_result(LocalStorage(bots.tmp / "images", StorageSettings()), public_id)
    queue.complete(job, result)


def redelivered(bots: Bots, public_id: str) -> None:
    """Reap the dead sender's row (the master's reaper) until a live bot sent it."""
    sends = SendQueue(bots.engine, QueueSettings())
    job = GenerationQueue(bots.engine, QueueSettings()).get(public_id)
    assert job is not None

    def sent() -> bool:
        sends.reap_expired()
        [row] = sends.for_job(job.id)
        return row.status is DeliveryStatus.SENT

    wait_until(sent, 30, 0.1, what="the row delivered by the second bot")


def test_a_bot_killed_after_discord_took_the_answer_leaves_one_answer(bots: Bots) -> None:
    emu = bots.emu
    bots.start()
    ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "once"})
    public_id = queued_id(ix)
    killed = bots.kill_on_first("webhook_edit", public_id)
    complete(bots, public_id)
    wait_until(lambda: killed, 20, what="the first sender killed")
    bots.start()
    redelivered(bots, public_id)
    answer = wait_answer(emu, ix, public_id)
    assert answer is ix.original and ix.followups == []
    with_images = [r for r in answer.revisions if r.attachment_names]
    assert len(with_images) == 2, "sent twice, shown once"
    assert emu.channel_messages(CHANNEL) == []


@pytest.mark.parametrize(
    ("channel", "beyond_nonce_window", "messages", "chatter"),
    [
        (CHANNEL, True, 1, 0),  # found in the channel's history
        (CHANNEL, True, 1, 250),  # found behind 250 other answers (pages of 100)
        (NO_HISTORY, False, 1, 0),  # no history to read: the nonce returns the first post
        (NO_HISTORY, True, 2, 0),  # neither: the window docs/operations.md names
    ],
)
def test_a_bot_killed_after_a_channel_post_is_answered_once_where_discord_can_tell(
    bots: Bots, channel: int, beyond_nonce_window: bool, messages: int, chatter: int
) -> None:
    emu = bots.emu
    # Interaction tokens used for 10 ms only: every answer goes to the channel.
    bots.start(bot__token_lifetime_s="0.01")
    ix = emu.slash_command(GUILD, channel, USER, "serve", options={"prompt": "in channel"})
    public_id = queued_id(ix)
    killed = bots.kill_on_first("channel_post", public_id)
    emu.chatter(channel, chatter)  # a busy channel: other answers since the job ended
    complete(bots, public_id)
    wait_until(lambda: killed, 20, what="the first sender killed")
    if beyond_nonce_window:
        emu.advance(emu.nonce_window_s + 1)
    bots.start(bot__token_lifetime_s="0.01")
    redelivered(bots, public_id)
    posts = [m for m in emu.channel_messages(channel) if f"`{public_id}`" in m.content]
    assert len(posts) == messages
    assert ix.followups == []


def test_the_answer_waits_for_a_progress_edit_still_on_its_way(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    """The answering process's progress edit, sent just before the job ended, lands
    after the answer was sent by another process: the answer waits for its fence."""
    fence = MessageFence(maria_services.engine, maria_services.settings.queue)
    with running_bot(maria_services, emu):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "late"})
        public_id = queued_id(ix)
        queue = maria_services.queue
        [job] = wait_until(lambda: [j for j in queue.claim("m", 50) if j.public_id == public_id])
        queue.mark_running(job, backend_job_id="rp-1")
        original = wait_until(lambda: ix.original, 5)
        wait_until(lambda: "to a GPU" in original.content and not fence.held_until([job.id]), 10)
        # As the answering process's tracker would (this test's bot shares discord.py's
        # per-route lock with its own tracker): take the fence, send an edit, which
        # Discord applies 1.5 s later.
        until, held = fence.take([public_id], 10)
        assert held == {public_id}
        late = emu.delay_next("PATCH", r"/messages/@original", 1.5)
        url = f"{emu.api_base}/webhooks/{emu.app_id}/{ix.token}/messages/@original"
        progress = f"Making `{public_id}` [######------] 50% step 10/20"
        edit = threading.Thread(
            target=requests.patch, args=(url,), kwargs={"json": {"content": progress}}
        )
        edit.start()
        wait_until(lambda: late.hits, 10, what="the edit on its way")
        result, _ = stored_result(maria_services.storage, public_id)
        queue.complete(job, result)
        edit.join(10)
        fence.release([public_id], until)
        answer = wait_answer(emu, ix, public_id)
        wait_until(lambda: len(answer.revisions) >= 3, 10, what="both edits applied")
        *_, before, last = answer.revisions
        assert before.content == progress
        assert last.attachment_names and last.content.startswith("**late**"), (
            "the late progress edit covered the answer"
        )


def test_no_progress_edit_starts_once_the_job_has_ended(maria_services: Services) -> None:
    fence = MessageFence(maria_services.engine, maria_services.settings.queue)
    queue = maria_services.queue
    job = queue.enqueue(new_job()).job
    other = queue.enqueue(new_job()).job
    until, held = fence.take([job.public_id, other.public_id], 10)
    assert held == {job.public_id, other.public_id}
    assert fence.held_until([job.id, other.id]) == {job.id: until, other.id: until}
    fence.release([job.public_id], until)
    assert fence.held_until([job.id, other.id]) == {other.id: until}
    [claimed] = [j for j in queue.claim("m", 2) if j.id == job.id]
    queue.complete(claimed, stored_result(maria_services.storage, job.public_id)[0])
    _, held = fence.take([job.public_id, other.public_id], 10)
    assert held == {other.public_id}, "an edit after the answer"
