"""Prompt help through the real HTTP client against the OpenAI-compatible endpoint's
double: an enhanced prompt when the model answers, and the prompt as written, with a
sentence saying why, when prompt help is off, stalls, fails or cannot be reached; image
descriptions only from a model that reads images. Every call ends within its limit."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from stillhouse.config import PromptHelpSettings
from stillhouse.prompt_help import NO_VISION, OFF, Enhancement, PromptHelper
from tests.doubles.openai_chat import OpenAIChatDouble
from tests.support import free_port

PNG_URL = "data:image/png;base64,iVBORw0KGgo="


def changed(settings: PromptHelpSettings, **changes: object) -> PromptHelpSettings:
    """The settings with some changed, validated as the environment's would be."""
    return PromptHelpSettings.model_validate({**settings.model_dump(), **changes})


def enhance(settings: PromptHelpSettings, prompt: str = "a lighthouse") -> Enhancement:
    return asyncio.run(PromptHelper(settings).enhance(prompt, interaction=77))


def test_the_models_rewrite_is_the_prompt_to_use(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    settings = changed(prompt_help_settings, api_key="sk-test-key")
    openai_chat.api_key = "sk-test-key"
    result = enhance(settings)
    assert result == Enhancement(
        original="a lighthouse",
        prompt="a lighthouse, golden hour lighting, wide shot, highly detailed",
        enhanced=True,
    )
    [sent] = openai_chat.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-key"
    assert sent.body["model"] == openai_chat.model and sent.body["stream"] is False
    assert sent.messages == [
        {"role": "system", "content": settings.system_prompt},
        {"role": "user", "content": "a lighthouse"},
    ]


def test_labels_quotes_and_chatter_around_the_rewrite_are_dropped(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    openai_chat.answer = lambda _: (
        'Here is an enhanced prompt:\n\n**Prompt:** "a lighthouse at dusk, oil painting"\n\n'
        "I added a time of day and a medium."
    )
    assert enhance(prompt_help_settings).prompt == "a lighthouse at dusk, oil painting"


def test_a_long_rewrite_is_cut_at_a_comma_within_the_limit(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    openai_chat.answer = lambda _: ", ".join(["a lighthouse"] + ["very detailed"] * 200)
    result = enhance(changed(prompt_help_settings, max_prompt_chars=100))
    assert result.enhanced and len(result.prompt) <= 100
    assert result.prompt.endswith("very detailed")


def test_with_prompt_help_off_the_prompt_is_used_as_written() -> None:
    result = enhance(PromptHelpSettings())
    assert result == Enhancement(
        original="a lighthouse", prompt="a lighthouse", enhanced=False, note=OFF
    )
    assert OFF == "Prompt help is not set up here."


@pytest.mark.parametrize("stall", ["never answers", "answers after 10 s"])
def test_a_stalled_endpoint_gives_the_prompt_back_within_the_limit(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings, stall: str
) -> None:
    openai_chat.stall = stall == "never answers"
    openai_chat.delay_s = 10.0
    settings = changed(prompt_help_settings, timeout_s=1.5)
    started = time.monotonic()
    result = enhance(settings)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 1.5 + 0.5, f"took {elapsed:.2f} s"
    assert result.prompt == "a lighthouse" and not result.enhanced
    assert result.note == "Prompt help timed out after 1.5 s; your prompt was used as written."
    assert len(openai_chat.requests) == 1  # the connection was made; no answer came


def test_an_http_error_gives_the_prompt_back_with_its_status(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    openai_chat.error_status = 500
    result = enhance(prompt_help_settings)
    assert result.prompt == "a lighthouse" and not result.enhanced
    assert result.note == "Prompt help failed (HTTP 500); your prompt was used as written."


def test_a_model_the_endpoint_does_not_serve_is_an_http_error_too(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    settings = changed(prompt_help_settings, model="someone/else")
    assert enhance(settings).note == (
        "Prompt help failed (HTTP 404); your prompt was used as written."
    )


def test_an_endpoint_nobody_listens_on_gives_the_prompt_back() -> None:
    settings = PromptHelpSettings(url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2.0)
    result = enhance(settings)
    assert not result.enhanced
    assert result.note == "Prompt help could not be reached; your prompt was used as written."


def test_an_empty_answer_gives_the_prompt_back(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    openai_chat.answer = lambda _: '  ""  '
    result = enhance(prompt_help_settings)
    assert not result.enhanced
    assert result.note == "Prompt help gave no usable answer; your prompt was used as written."


def test_each_call_logs_one_line_with_its_outcome_and_interaction(
    openai_chat: OpenAIChatDouble,
    prompt_help_settings: PromptHelpSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stillhouse.prompt_help")
    enhance(prompt_help_settings)
    openai_chat.error_status = 503
    enhance(prompt_help_settings)
    lines = [r for r in caplog.records if r.name == "stillhouse.prompt_help"]
    seen = [(r.__dict__["action"], r.__dict__["outcome"], r.levelname) for r in lines]
    assert seen == [
        ("prompt_help.enhance", "enhanced", "INFO"),
        ("prompt_help.enhance", "http", "WARNING"),
    ]
    assert all(r.__dict__["interaction"] == 77 for r in lines)
    assert lines[1].__dict__["status"] == 503
    assert "a lighthouse" not in caplog.text  # lengths only, never the user's words


def test_a_vision_model_suggests_up_to_three_prompts_for_an_image(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    openai_chat.vision = True
    openai_chat.answer = lambda _: (
        "Here are three prompts:\n1. a red barn, watercolour\n2. **a red barn at dawn**\n"
        '3. "a barn in a field, photo"\n4. a fourth one'
    )
    settings = changed(prompt_help_settings, vision=True)
    helper = PromptHelper(settings)
    assert helper.sees_images
    described = asyncio.run(helper.describe(PNG_URL))
    assert described.prompts == [
        "a red barn, watercolour",
        "a red barn at dawn",
        "a barn in a field, photo",
    ]
    assert described.described and described.note is None
    [sent] = openai_chat.requests
    assert sent.image_urls() == [PNG_URL]
    assert sent.messages[1]["content"][1] == {"type": "image_url", "image_url": {"url": PNG_URL}}


def test_without_vision_describe_says_so_and_asks_nobody(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    helper = PromptHelper(prompt_help_settings)
    assert helper.active and not helper.sees_images
    described = asyncio.run(helper.describe(PNG_URL))
    assert described.prompts == [] and described.note == NO_VISION
    assert openai_chat.requests == []
    off = asyncio.run(PromptHelper(PromptHelpSettings(vision=True)).describe(PNG_URL))
    assert off.note == OFF


def test_a_text_only_endpoint_told_it_sees_images_refuses_them(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    settings = changed(prompt_help_settings, vision=True)
    described = asyncio.run(PromptHelper(settings).describe(PNG_URL))
    assert described.prompts == []
    assert described.note == "Prompt help failed (HTTP 400); try again in a moment."


def test_a_stalled_describe_ends_within_the_limit(
    openai_chat: OpenAIChatDouble, prompt_help_settings: PromptHelpSettings
) -> None:
    openai_chat.vision, openai_chat.stall = True, True
    settings = changed(prompt_help_settings, vision=True, timeout_s=1.0)
    started = time.monotonic()
    described = asyncio.run(PromptHelper(settings).describe(PNG_URL))
    assert time.monotonic() - started < 1.0 + 0.5
    assert described.note == "Prompt help timed out after 1 s; try again in a moment."
