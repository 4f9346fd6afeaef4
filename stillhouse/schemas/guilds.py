"""A Discord server's own settings, as its managers set them (stored by
stillhouse.preferences)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

MAX_WORDS = 200
MAX_PATTERNS = 25
MAX_RULE_CHARS = 100
MAX_CHANNELS = 50
# A quantified group that itself holds a quantifier, e.g. (a+)+ or (\w*x)*: the shape of
# patterns whose matching time explodes on some prompts. Refused for managers' patterns
# (the operators' filter file is trusted).
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,)")


class GuildConfig(BaseModel):
    """One server's settings. Empty values mean "as the operators configured"."""

    channels: list[int] = Field(
        default_factory=list, max_length=MAX_CHANNELS, description="where /serve works"
    )
    workflow: str | None = None
    mode: str | None = None
    aspect: str | None = None
    filter_words: list[str] = Field(default_factory=list, max_length=MAX_WORDS)
    filter_patterns: list[str] = Field(default_factory=list, max_length=MAX_PATTERNS)
    # Outside age-restricted channels: an image the image check flags, and one it could
    # not check (the service down), is sent as a spoiler / sent, or withheld.
    flagged_images: Literal["spoiler", "withhold"] = "withhold"
    # Role id -> tier, for tiers the operators let servers give (stillhouse.tiers).
    role_tiers: dict[str, str] = Field(default_factory=dict, max_length=MAX_CHANNELS)
    unchecked_images: Literal["send", "withhold"] = "withhold"

    @field_validator("filter_patterns")
    @classmethod
    def _safe_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            problem = pattern_problem(pattern)
            if problem:
                raise ValueError(problem)
        return value

    def serves_in(self, channel_id: int | None) -> bool:
        return not self.channels or channel_id in self.channels


def pattern_problem(pattern: str) -> str | None:
    """Why a manager's filter pattern is refused, in words; None if it is fine."""
    if len(pattern) > MAX_RULE_CHARS:
        return f"a pattern may be {MAX_RULE_CHARS} characters at most"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"“{pattern}” is not a regular expression ({exc})"
    if _NESTED_QUANTIFIER.search(pattern):
        return (
            f"“{pattern}” repeats a group that itself repeats (like (a+)+), which can "
            "take minutes to check against one prompt; write it without the nesting"
        )
    return None
