"""Progress people trust: the queued message keeps the user's place in the line, edited
as it moves, until a GPU takes the job; then says a GPU is starting (and, after a while,
that it is waiting for one to start or come free) rather than sitting at 0 %; then a bar
with the time left from how long recent jobs took. Read from the emulator's history of
the message (every revision the bot made)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from stillhouse.ids import new_owner
from stillhouse.queue.records import JobRecord
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    OTHER_USER,
    USER,
    queued_id,
    running_bot,
    shift_clock,
    stored_result,
)
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.support import wait_until


def serve(emu: DiscordEmulator, user: int, prompt: str) -> Interaction:
    return emu.slash_command(GUILD, CHANNEL, user, "serve", options={"prompt": prompt})


def claim_next(services: Services) -> JobRecord:
    """A master takes the head of the line."""
    [job] = wait_until(lambda: services.queue.claim(new_owner("test-master"), 1))
    return job


def shown(ix: Interaction, text: str) -> None:
    became(ix, lambda content: content == text, text)


def became(ix: Interaction, test: Callable[[str], bool], what: str) -> None:
    """Wait until the message's text passes `test`; on timeout, say what it showed."""
    try:
        wait_until(lambda: ix.original is not None and test(ix.original.content), 20, what=what)
    except AssertionError:
        history = [r.content for r in ix.original.revisions] if ix.original else []
        raise AssertionError(f"never showed {what!r}; it showed {history}") from None


def test_the_message_keeps_the_users_place_then_says_a_gpu_is_starting_then_the_time_left(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    services = maria_services
    with running_bot(services, emu):
        for n in range(3):
            queued_id(serve(emu, OTHER_USER, f"before {n}"))
        ix = serve(emu, USER, "a lighthouse")
        mine = queued_id(ix)
        queued = "You will get your images here."
        assert (
            ix.wait_response()["data"]["content"]
            == f"Queued `{mine}` “a lighthouse” - 3 ahead of you. {queued}"
        )

        # The line moves: a master takes the first job, finishes it, takes the next.
        first = claim_next(services)
        shown(ix, f"Queued `{mine}` “a lighthouse” - 2 ahead of you. {queued}")
        result, _ = stored_result(services.storage, first.public_id)
        services.queue.complete(first, result)
        claim_next(services)
        claim_next(services)
        # One job has finished: the pace says how long the wait is.
        wait_until(
            lambda: (
                ix.original is not None
                and ix.original.content.startswith(
                    f"Queued `{mine}` “a lighthouse” - next up, about "
                )
            ),
            10,
            what="next up, with a wait",
        )

        job = claim_next(services)
        assert job.public_id == mine
        shown(ix, f"Sent `{mine}` to a GPU - starting.")
        services.queue.mark_running(job, "runpod-job-1")
        shift_clock(services, timedelta(seconds=40))  # a cold start: no step reported yet
        shown(ix, f"Sent `{mine}` to a GPU - waiting for one to start or come free (40 s so far).")

        services.queue.set_progress(job, 0.5, "step 10/20")
        wait_until(
            lambda: (
                ix.original is not None
                and ix.original.content.startswith(f"Making `{mine}` [######------] 50% step 10/20")
                and ix.original.content.endswith(" left")
            ),
            10,
            what="the bar with the time left",
        )

    history = [r.content for r in ix.original.revisions]
    waiting = history[: history.index(f"Sent `{mine}` to a GPU - starting.")]
    assert waiting and all("ahead of you" in t or "next up" in t for t in waiting), history
    assert not any("] 0%" in t for t in history), "no bar at 0 % before a worker reports a step"
