"""The preview's placeholder image: what a real run would have drawn, in words. The prompt
may be in any script: each character is drawn with the first bundled font that has it
(fonts/README.md), and characters none has are counted on the image instead of shown as
boxes."""

from __future__ import annotations

import functools
import io
import re
from importlib import resources
from typing import Any

from PIL import Image, ImageDraw, ImageFont, features

from master.backends.glyphs import characters

BACKGROUND = (38, 50, 56)
INK = (236, 239, 241)
MUTED = (176, 190, 197)
ACCENT = (0, 150, 136)
MAX_PROMPT_LINES = 14
# Latin, Greek and Cyrillic first: their punctuation and digits suit every other script.
FONTS = (
    "NotoSans-Regular.ttf",
    "NotoSansArabic-Regular.ttf",
    "NotoSansHebrew-Regular.ttf",
    "NotoSansDevanagari-Regular.ttf",
    "NotoSansBengali-Regular.ttf",
    "NotoSansTamil-Regular.ttf",
    "NotoSansThai-Regular.ttf",
    "NotoSansGeorgian-Regular.ttf",
    "NotoSansArmenian-Regular.ttf",
    "DroidSansFallback.ttf",  # Chinese, Japanese, Korean
)
# Raqm shapes Arabic and Indic scripts (joined letters, reordered vowel signs).
_LAYOUT = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def placeholder(
    width: int, height: int, workflow: str | None, facts: dict[str, Any], index: int
) -> bytes:
    """A PNG that says what a real run would have drawn."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    size = max(10, min(width, height) // 24)
    margin, leading = size, size + size // 2
    draw.rectangle((4, 4, width - 5, height - 5), outline=ACCENT, width=3)
    header = [
        "PREVIEW - no GPU was used",
        f"workflow: {workflow or 'unknown'}",
        f"seed: {facts.get('seed', '-')}    image {index + 1}",
    ]
    prompt = _INVISIBLE.sub(" ", str(facts.get("prompt", "")))
    missing = undrawable(prompt)
    lines = wrap(prompt, width - 2 * margin, size)
    if len(lines) > MAX_PROMPT_LINES:
        lines = [*lines[: MAX_PROMPT_LINES - 1], lines[MAX_PROMPT_LINES - 1] + " ..."]
    y = margin
    for line in header:
        draw_line(draw, (margin, y), line, size, INK)
        y += leading
    y += leading // 2
    for line in lines:
        draw_line(draw, (margin, y), line, size, INK)
        y += leading
    if missing:
        draw_line(draw, (margin, y + leading // 2), missing_note(missing), size, MUTED)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def undrawable(text: str) -> int:
    """How many characters of `text` no bundled font has."""
    return sum(1 for c in text if not c.isspace() and _font_for(ord(c)) is None)


def missing_note(count: int) -> str:
    """What the image says in place of characters it cannot draw."""
    return f"({count} character{'s' if count > 1 else ''} this font cannot draw)"


def draw_line(
    draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, size: int, fill: tuple[int, ...]
) -> None:
    """One line, run by run, each run in the font that has its characters."""
    x, y = at
    for name, run in runs(text):
        font = _font(name, size)
        draw.text((x, y), run, font=font, fill=fill)
        x += int(font.getlength(run))


def runs(text: str) -> list[tuple[str, str]]:
    """`text` cut where the font must change; characters no font has are left out. A run
    keeps its font while that font has the next character, so shaping stays whole."""
    found: list[tuple[str, str]] = []
    current: str | None = None
    chunk = ""
    for char in text:
        code = ord(char)
        name = current if current and code in _covered(current) else _font_for(code)
        if name is None:
            continue
        if name != current and chunk:
            found.append((current or name, chunk))
            chunk = ""
        current, chunk = name, chunk + char
    if chunk and current:
        found.append((current, chunk))
    return _spaces_apart(found)


def _spaces_apart(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A run's trailing spaces as a run of their own: a right-to-left run would draw them
    on its left, gluing it to the run before."""
    apart: list[tuple[str, str]] = []
    for name, run in found:
        kept = run.rstrip()
        apart.append((name, kept) if kept else (FONTS[0], run))
        if kept and kept != run:
            apart.append((FONTS[0], run[len(kept) :]))
    return apart


def wrap(text: str, width: float, size: int) -> list[str]:
    """Lines of `text` no wider than `width` pixels: broken at spaces, and anywhere in a
    word too long for a line (scripts such as Chinese have no spaces)."""
    lines: list[str] = []
    line = ""
    for word in re.findall(r"\S+\s*", text):
        if _width(line + word.rstrip(), size) <= width:
            line += word
            continue
        if line:
            lines.append(line.rstrip())
            line = ""
        while _width(word.rstrip(), size) > width and len(lines) <= MAX_PROMPT_LINES:
            cut = _fitting(word, width, size)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
        if len(lines) > MAX_PROMPT_LINES:
            break
    if line.strip():
        lines.append(line.rstrip())
    return lines[: MAX_PROMPT_LINES + 1]  # one more than is drawn says "there is more"


def _fitting(word: str, width: float, size: int) -> int:
    """How many leading characters of `word` fit in `width` (at least one)."""
    total = 0.0
    for count, char in enumerate(word):
        total += _advance(char, size)
        if total > width:
            return max(1, count)
    return len(word)


def _width(text: str, size: int) -> float:
    return sum(_advance(char, size) for char in text)


@functools.lru_cache(maxsize=16384)  # bounded: a prompt may hold any characters
def _advance(char: str, size: int) -> float:
    name = _font_for(ord(char))
    return 0.0 if name is None else float(_font(name, size).getlength(char))


@functools.lru_cache(maxsize=16384)
def _font_for(code: int) -> str | None:
    return next((name for name in FONTS if code in _covered(name)), None)


@functools.cache
def _covered(name: str) -> frozenset[int]:
    return characters(_data(name))


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(io.BytesIO(_data(name)), size, layout_engine=_LAYOUT)


@functools.cache
def _data(name: str) -> bytes:
    return resources.files("master.backends").joinpath("fonts", name).read_bytes()
