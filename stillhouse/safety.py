"""Image safety by Discord's rules: adult content only in age-restricted channels.

Two checks. Prompts: words of the operators' NSFW list are refused outside
age-restricted channels (intake). Images: each generated image may be sent to an image
check before it is shown outside an age-restricted channel; a flagged image is sent as a
spoiler or withheld, as the server's managers chose (/server images), and when the check
cannot answer the server's choice applies too (send unchecked, or withhold).

The image check is an HTTP service of the operator's (a classifier model behind a small
adapter): POST the image's bytes with its content type, answer `{"score": 0..1}`; a score at
or above STILLHOUSE_SAFETY__IMAGE_CHECK_THRESHOLD flags the image. Without a URL, images
are not checked, and every process says so when it starts."""

from __future__ import annotations

from typing import Protocol

import requests
from pydantic import BaseModel, Field, ValidationError

from stillhouse.config import SafetySettings
from stillhouse.errors import StillhouseError


class ImageCheckUnavailable(StillhouseError):
    """The image check did not answer usefully (down, slow, nonsense)."""


class Verdict(BaseModel):
    """What the check said of one image."""

    score: float = Field(ge=0, le=1)
    flagged: bool


class ImageCheck(Protocol):
    """Looks at one generated image."""

    @property
    def active(self) -> bool:
        """False when images are not checked at all."""

    def check(self, data: bytes, content_type: str) -> Verdict:
        """The verdict; ImageCheckUnavailable when there is none to be had."""


class NoImageCheck:
    """Images are not checked (no service configured)."""

    active = False

    def check(self, data: bytes, content_type: str) -> Verdict:
        return Verdict(score=0.0, flagged=False)


class _Answer(BaseModel):
    score: float = Field(ge=0, le=1)


class HttpImageCheck:
    """The operator's classifier service over HTTP."""

    active = True

    def __init__(self, url: str, threshold: float, timeout_s: float) -> None:
        self.url = url
        self.threshold = threshold
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def check(self, data: bytes, content_type: str) -> Verdict:
        try:
            answer = self._session.post(
                self.url,
                data=data,
                headers={"Content-Type": content_type},
                timeout=self.timeout_s,
            )
            answer.raise_for_status()
            score = _Answer.model_validate_json(answer.content).score
        except (requests.RequestException, ValidationError) as exc:
            raise ImageCheckUnavailable(f"image check at {self.url}: {exc}") from None
        return Verdict(score=score, flagged=score >= self.threshold)


def make_image_check(settings: SafetySettings) -> ImageCheck:
    """The configured check, or none."""
    if not settings.image_check_url:
        return NoImageCheck()
    return HttpImageCheck(
        settings.image_check_url, settings.image_check_threshold, settings.image_check_timeout_s
    )


def describe(settings: SafetySettings) -> str:
    """What is and is not checked, for the startup line."""
    words = len(settings.nsfw_list())
    prompts = (
        f"prompts with any of {words} NSFW words only in age-restricted channels"
        if words
        else "prompts: no NSFW word list (any prompt in any channel)"
    )
    if not settings.image_check_url:
        images = "generated images are NOT checked (STILLHOUSE_SAFETY__IMAGE_CHECK_URL unset)"
    else:
        images = (
            f"generated images checked at {settings.image_check_url} before they are shown "
            f"outside age-restricted channels (flagged at a score of "
            f"{settings.image_check_threshold:g}); images sent as links are not checked"
        )
    return f"safety: {prompts}; {images}"
