"""The content filter /serve applies to prompts before anything is queued.

Words match whole words, case-insensitively; patterns are regular expressions. A filter
file (TOML) may add words and patterns for every guild and per guild:

    words = ["gore"]
    patterns = ['\\bnsfw\\b']

    [guilds.123456789012345678]
    words = ["spoilers"]
    replace = false   # true: this guild's lists replace the global ones
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from stillhouse.errors import StillhouseError
from stillhouse.schemas.guilds import GuildConfig


class FilterFileError(StillhouseError):
    """The filter file cannot be used; the message names the file and the problem."""


class FilterRules(BaseModel):
    """Words and patterns for one scope."""

    words: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    replace: bool = False

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {pattern!r} is not a regular expression: {exc}"
                ) from None
        return value


class FilterFile(BaseModel):
    """The whole filter file."""

    words: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    guilds: dict[int, FilterRules] = Field(default_factory=dict)


class _Compiled:
    def __init__(self, words: list[str], patterns: list[str]) -> None:
        alternatives = [rf"\b{re.escape(_fold(w))}\b" for w in words if w.strip()]
        alternatives += patterns
        self.regex = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


class ContentFilter:
    """Says which rule, if any, a text breaks."""

    def __init__(self, rules: FilterFile) -> None:
        self._global = _Compiled(rules.words, rules.patterns)
        self._guilds: dict[int, _Compiled] = {}
        for guild_id, extra in rules.guilds.items():
            words = extra.words if extra.replace else rules.words + extra.words
            patterns = extra.patterns if extra.replace else rules.patterns + extra.patterns
            self._guilds[guild_id] = _Compiled(words, patterns)

    @classmethod
    def from_settings(cls, words: list[str], file: Path | None) -> ContentFilter:
        """The configured filter: FILTER_WORDS plus the filter file, if any."""
        rules = FilterFile()
        if file is not None:
            try:
                rules = FilterFile.model_validate(tomllib.loads(file.read_text()))
            except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
                raise FilterFileError(f"filter file {file}: {exc}") from None
        rules.words = [*words, *rules.words]
        return cls(rules)

    def violation(
        self, text: str, guild_id: int | None, own: GuildConfig | None = None
    ) -> str | None:
        """The matched text when `text` breaks a rule of this guild (the operators'
        lists for it, then the server's own words and patterns), else None."""
        compiled = self._guilds.get(guild_id, self._global) if guild_id else self._global
        folded = _fold(text)
        for regex in (compiled.regex, _server_rules(own)):
            found = regex.search(folded) if regex is not None else None
            if found:
                return found.group(0)
        return None


def _server_rules(own: GuildConfig | None) -> re.Pattern[str] | None:
    if own is None or not (own.filter_words or own.filter_patterns):
        return None
    return _compiled(tuple(own.filter_words), tuple(own.filter_patterns))


@functools.lru_cache(maxsize=1024)
def _compiled(words: tuple[str, ...], patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # Servers' lists change rarely and are read on every request: compiled once each.
    return _Compiled(list(words), list(patterns)).regex


def _fold(text: str) -> str:
    # NFKC folds look-alike forms (full-width letters, ligatures) onto plain letters, so
    # full-width "gore" cannot slip past a rule for "gore".
    return unicodedata.normalize("NFKC", text).casefold()
