"""Prompt help in /serve (`enhance`) and the ✨ Enhance button, through the real
discord.py against the OpenAI-compatible double: the rewrite is queued and both prompts
shown; a stalled endpoint falls back to the prompt as written within the timeout."""

from __future__ import annotations

import time

from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    USER,
    buttons,
    finish,
    queued_id,
    running_bot,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.doubles.openai_chat import OpenAIChatDouble

ADDED = ", golden hour lighting, wide shot, highly detailed"  # the double's rewrite


def serve(emu: DiscordEmulator, prompt: str) -> Interaction:
    return emu.slash_command(
        GUILD, CHANNEL, USER, "serve", options={"prompt": prompt, "enhance": True}
    )


def test_enhance_queues_the_rewritten_prompt_and_shows_both(
    emu: DiscordEmulator, prompt_help_services: Services, openai_chat: OpenAIChatDouble
) -> None:
    services = prompt_help_services
    with running_bot(services, emu):
        ix = serve(emu, "a fox")
        public_id = queued_id(ix)
        job = services.queue.get(public_id)
        assert job is not None and job.params.root["prompt"] == "a fox" + ADDED
        shown = ix.original.content if ix.original else ""
        assert "✨ Enhanced “a fox” → “a fox" + ADDED + "”" in shown, shown
        assert [r.user_text() for r in openai_chat.requests] == ["a fox"]

        # The ✨ button under the result asks again from its prompt.
        finish(services, public_id)
        result = wait_answer(emu, ix, public_id)
        assert f"sh:e:{public_id}" in buttons(result)
        press = emu.click(result, f"sh:e:{public_id}", USER)
        again = services.queue.get(queued_id(press))
        assert again is not None and again.params.root["prompt"] == "a fox" + ADDED + ADDED
        assert again.workflow_name == job.workflow_name


def test_a_stalled_endpoint_keeps_the_prompt_as_written_within_the_timeout(
    emu: DiscordEmulator, prompt_help_services: Services, openai_chat: OpenAIChatDouble
) -> None:
    services = prompt_help_services
    openai_chat.stall = True  # accepts, never answers (for 10 s and more)
    limit = services.settings.prompt_help.timeout_s
    with running_bot(services, emu):
        started = time.monotonic()
        ix = serve(emu, "a fox")
        public_id = queued_id(ix)
        waited = time.monotonic() - started
        job = services.queue.get(public_id)
        assert job is not None and job.params.root["prompt"] == "a fox"
        assert waited <= limit + 1.0, f"queued after {waited:.1f} s; the limit is {limit} s"
        shown = ix.original.content if ix.original else ""
        assert "your prompt was used as written" in shown, shown
