"""Prompt help from an OpenAI-compatible chat API (vLLM, llama.cpp's server, OpenAI).

`PromptHelper.enhance` rewrites a prompt for Stable Diffusion; `PromptHelper.describe`
suggests prompts for an image (a vision model only). Neither ever raises for the
endpoint's sake: a call that is off, slow, refused or nonsensical comes back as a result
with `note`, a sentence for the user, and `enhance` then hands back the prompt as written.
Every call ends within STILLHOUSE_PROMPT_HELP__TIMEOUT_S, however the endpoint stalls,
and logs one line (action `prompt_help.enhance` / `prompt_help.describe`).

The helper holds no connection: each call opens its own client, so one helper may be
built anywhere (`PromptHelper(settings.prompt_help)`) and used from any event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from functools import cached_property
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

from stillhouse.config import PromptHelpSettings

log = logging.getLogger(__name__)

MAX_SUGGESTIONS = 3
OFF = "Prompt help is not set up here."
NO_VISION = "Prompt help here cannot see images: its model reads text only."
AS_WRITTEN = "your prompt was used as written."
TRY_AGAIN = "try again in a moment."

DESCRIBE_SYSTEM = (
    "You write prompts for Stable Diffusion image models. Look at the image and write "
    f"{MAX_SUGGESTIONS} different prompts that would make an image like it: subject, style, "
    "medium, lighting, colour and composition. One prompt per line, each under 60 words; "
    "no numbering, no quotes, no labels, nothing else."
)
DESCRIBE_ASK = f"Write {MAX_SUGGESTIONS} prompts for this image."

# How a call went, as logged: a result, or why there is none.
Outcome = Literal[
    "enhanced", "described", "off", "no_vision", "empty", "timeout", "http", "unreachable",
    "unusable",
]  # fmt: skip


class Enhancement(BaseModel):
    """A prompt after prompt help: `prompt` is the one to use, whatever happened."""

    original: str = Field(description="the prompt as the user wrote it")
    prompt: str = Field(description="what to use: the model's rewrite, or the original")
    enhanced: bool = Field(description="whether `prompt` is the model's rewrite")
    note: str | None = Field(
        default=None, description="for the user, when the original was kept: why"
    )


class Description(BaseModel):
    """Prompts suggested for an image; none, and a `note` saying why, when there are none."""

    image_url: str = Field(description="the image asked about (an http(s) or data: URL)")
    prompts: list[str] = Field(default_factory=list, max_length=MAX_SUGGESTIONS)
    note: str | None = Field(default=None, description="for the user, when there are no prompts")

    @property
    def described(self) -> bool:
        """Whether there are prompts to show."""
        return bool(self.prompts)


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Completion(BaseModel):
    """The part of OpenAI's chat.completion object we read."""

    choices: list[_Choice] = Field(min_length=1)


class _Failure(Exception):
    """Why there is nothing from the model to use; `status` for an HTTP error."""

    def __init__(self, outcome: Outcome, status: int | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.status = status


# Failures that are no fault of the endpoint's, said as they are.
_PLAIN: dict[Outcome, str] = {
    "off": OFF,
    "no_vision": NO_VISION,
    "empty": "There is no prompt to improve.",
}


class PromptHelper:
    """Prompt help through POST {url}/chat/completions, or none when no URL is set."""

    def __init__(self, settings: PromptHelpSettings) -> None:
        self.settings = settings

    @property
    def active(self) -> bool:
        """False when prompt help is off (no URL)."""
        return bool(self.settings.url)

    @property
    def sees_images(self) -> bool:
        """Whether `describe` can work: prompt help is on and its model reads images."""
        return self.active and self.settings.vision

    async def enhance(self, prompt: str, *, interaction: int | None = None) -> Enhancement:
        """The prompt rewritten for Stable Diffusion, or the original with a note. Returns
        within `timeout_s`; never raises for the endpoint's sake. `interaction` (the
        Discord interaction id) goes into the log line."""
        started = time.monotonic()
        outcome: Outcome = "enhanced"
        status: int | None = None
        try:
            if not self.active:
                raise _Failure("off")
            if not prompt.strip():
                raise _Failure("empty")
            messages = [
                {"role": "system", "content": self.settings.system_prompt},
                {"role": "user", "content": prompt},
            ]
            answer = await self._ask(messages, self._max_tokens(1))
            cleaned = clean_prompt(answer, self.settings.max_prompt_chars)
            if not cleaned:
                raise _Failure("unusable")
            result = Enhancement(original=prompt, prompt=cleaned, enhanced=True)
        except _Failure as failure:
            outcome, status = failure.outcome, failure.status
            note = self._note(failure, AS_WRITTEN)
            result = Enhancement(original=prompt, prompt=prompt, enhanced=False, note=note)
        self._log("prompt_help.enhance", outcome, status, started, interaction, len(prompt))
        return result

    async def describe(self, image_url: str, *, interaction: int | None = None) -> Description:
        """Up to MAX_SUGGESTIONS prompts that would make an image like the one at
        `image_url` (http(s), or a `data:image/...;base64,` URL when the endpoint cannot
        reach where the image lives). No prompts and a note when prompt help is off, its
        model reads no images, or it fails. Returns within `timeout_s`; never raises for
        the endpoint's sake."""
        started = time.monotonic()
        outcome: Outcome = "described"
        status: int | None = None
        try:
            if not self.active:
                raise _Failure("off")
            if not self.settings.vision:
                raise _Failure("no_vision")
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": DESCRIBE_SYSTEM},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": DESCRIBE_ASK},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                },
            ]
            answer = await self._ask(messages, self._max_tokens(MAX_SUGGESTIONS))
            prompts = suggestions(answer, self.settings.max_prompt_chars)
            if not prompts:
                raise _Failure("unusable")
            result = Description(image_url=image_url, prompts=prompts)
        except _Failure as failure:
            outcome, status = failure.outcome, failure.status
            result = Description(image_url=image_url, note=self._note(failure, TRY_AGAIN))
        self._log("prompt_help.describe", outcome, status, started, interaction, None)
        return result

    async def _ask(self, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """The model's answer; _Failure when there is none to be had in time."""
        body = {
            "model": self.settings.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "stream": False,
        }
        headers = {}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        limit = self.settings.timeout_s
        try:
            # The whole call, not each read: httpx's timeouts restart with every byte, so an
            # endpoint that trickles (or a slow connect, then a slow answer) could run long.
            async with asyncio.timeout(limit):
                async with httpx.AsyncClient(timeout=limit, verify=self._ssl) as client:
                    answer = await client.post(
                        f"{self.settings.url}/chat/completions", json=body, headers=headers
                    )
        except (TimeoutError, httpx.TimeoutException):
            raise _Failure("timeout") from None
        except httpx.HTTPError:
            raise _Failure("unreachable") from None
        if answer.status_code != httpx.codes.OK:
            raise _Failure("http", answer.status_code)
        try:
            completion = _Completion.model_validate_json(answer.content)
        except ValidationError:
            raise _Failure("unusable") from None
        return completion.choices[0].message.content or ""

    @cached_property
    def _ssl(self) -> ssl.SSLContext | bool:
        # Made once: building a context loads the CA bundle, too slow for every call.
        return httpx.create_ssl_context() if self.settings.url.startswith("https:") else True

    def _max_tokens(self, prompts: int) -> int:
        # About 4 characters a token; a little room for what cleaning drops.
        return prompts * (self.settings.max_prompt_chars // 4 + 16)

    def _note(self, failure: _Failure, then: str) -> str:
        if failure.outcome in _PLAIN:
            return _PLAIN[failure.outcome]
        if failure.outcome == "timeout":
            return f"Prompt help timed out after {self.settings.timeout_s:g} s; {then}"
        if failure.outcome == "http":
            return f"Prompt help failed (HTTP {failure.status}); {then}"
        if failure.outcome == "unreachable":
            return f"Prompt help could not be reached; {then}"
        return f"Prompt help gave no usable answer; {then}"

    def _log(
        self,
        action: str,
        outcome: Outcome,
        status: int | None,
        started: float,
        interaction: int | None,
        prompt_chars: int | None,
    ) -> None:
        fields: dict[str, Any] = {
            "action": action,
            "outcome": outcome,
            "elapsed_ms": round((time.monotonic() - started) * 1000),
            "model": self.settings.model,
        }
        # Lengths only: prompts are the users' words, not the operators' to keep.
        extras = {"status": status, "interaction": interaction, "prompt_chars": prompt_chars}
        fields.update({k: v for k, v in extras.items() if v is not None})
        expected = outcome in ("enhanced", "described", *_PLAIN)
        level = logging.INFO if expected else logging.WARNING
        log.log(level, "prompt help: %s", outcome, extra=fields)


_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"  # straight, curly, guillemets
_FENCE = re.compile(r"^\s*```\w*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.):])\s+")
_LABEL = re.compile(
    r"^(?:(?:enhanced|improved|rewritten|new|final|revised|suggested|stable diffusion|sd)\s+)?"
    r"prompt(?:\s*#?\d{1,2})?\s*[:\-\u2013\u2014]\s*",  # a colon or any dash
    re.IGNORECASE,
)


def clean_prompt(answer: str, limit: int) -> str:
    """The prompt in a model's answer: its first line that is not a preamble ("Here is
    the prompt:"), without quotes, labels, list marks or markdown, at most `limit`
    characters (cut at a comma or a space). Empty when there is none."""
    lines = _content_lines(answer)
    return _clean_line(lines[0], limit) if lines else ""


def suggestions(answer: str, limit: int) -> list[str]:
    """Up to MAX_SUGGESTIONS distinct prompts, one per line of a model's answer."""
    found: list[str] = []
    for line in _content_lines(answer):
        cleaned = _clean_line(line, limit)
        if cleaned and cleaned.lower() not in {f.lower() for f in found}:
            found.append(cleaned)
    return found[:MAX_SUGGESTIONS]


def _content_lines(answer: str) -> list[str]:
    lines = [line for line in answer.splitlines() if line.strip() and not _FENCE.match(line)]
    # "Here are three prompts:" and the like introduce the answer; they are none of it.
    return [line for line in lines if not line.rstrip(" *_").endswith(":")] or lines


def _clean_line(line: str, limit: int) -> str:
    text = line.strip().replace("**", "")  # markdown bold; `__` may be a wildcard
    text = _BULLET.sub("", text)
    text = _LABEL.sub("", text.strip(_QUOTES + " ")).strip(_QUOTES + " ")
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    # A prompt is a list of phrases: end after a whole one, else after a whole word.
    cut = text[:limit]
    for mark in (", ", " "):
        at = cut.rfind(mark)
        if at > limit // 2:
            return cut[:at].rstrip(" ,;")
    return cut.rstrip(" ,;")
