"""The preview's placeholder draws prompts in any script it has a font for, and says how
many characters it could not draw instead of drawing boxes."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from master.backends import placeholder as ph
from master.backends.glyphs import characters

SCRIPTS = {
    "latin": "a lighthouse at dawn, café crème",
    "greek": "Γειά σου κόσμε",  # noqa: RUF001 - Greek on purpose
    "cyrillic": "Привет, мир",
    "arabic": "مرحبا بالعالم",
    "hebrew": "שלום עולם",
    "devanagari": "नमस्ते दुनिया",
    "bengali": "ওহে বিশ্ব",
    "tamil": "வணக்கம் உலகம்",
    "thai": "สวัสดีชาวโลก",
    "georgian": "გამარჯობა",
    "armenian": "Բարեւ աշխարհ",
    "chinese": "你好，世界",  # noqa: RUF001 - a Chinese comma on purpose
    "japanese": "こんにちは世界、カタカナ",
    "korean": "안녕하세요 세계",
}


def glyph(font: ImageFont.FreeTypeFont, char: str) -> Image.Image:
    image = Image.new("L", (64, 64))
    ImageDraw.Draw(image).text((8, 8), char, font=font, fill=255)
    return image


@pytest.mark.parametrize("name", ph.FONTS)
def test_the_cmap_reader_agrees_with_what_freetype_draws(name: str) -> None:
    data = ph._data(name)
    covered = characters(data)
    font = ImageFont.truetype(io.BytesIO(data), 32)
    box = glyph(font, "\uffff")  # a noncharacter: every font draws its missing-glyph box
    inked = sorted(c for c in covered if not chr(c).isspace() and 0x20 < c < 0xFFF0)
    for code in inked[:: max(1, len(inked) // 40)]:
        assert ImageChops.difference(glyph(font, chr(code)), box).getbbox(), hex(code)
    absent = [c for c in (0x1F600, 0x13000, 0x10FFFD) if c not in covered]
    for code in absent:
        assert not ImageChops.difference(glyph(font, chr(code)), box).getbbox(), hex(code)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bundled_script_is_drawn(script: str) -> None:
    text = SCRIPTS[script]
    assert ph.undrawable(text) == 0
    drawn = "".join(run for _, run in ph.runs(text))
    assert drawn == text


def test_characters_no_font_has_are_counted_not_drawn() -> None:
    text = "a cat 😀🎉 𓀀"
    assert ph.undrawable(text) == 3
    assert "😀" not in "".join(run for _, run in ph.runs(text))
    assert ph.missing_note(3) == "(3 characters this font cannot draw)"
    assert ph.missing_note(1) == "(1 character this font cannot draw)"
    with_note = ph.placeholder(256, 256, "w", {"prompt": text}, 0)
    without = ph.placeholder(256, 256, "w", {"prompt": "a cat"}, 0)
    assert with_note != without  # the note is drawn below the prompt


def test_a_prompt_without_spaces_wraps_inside_the_image() -> None:
    text = "灯台" * 200
    lines = ph.wrap(text, 400, 20)
    assert 2 < len(lines) <= ph.MAX_PROMPT_LINES + 1
    assert all(ph._width(line, 20) <= 400 for line in lines)


def test_a_right_to_left_run_keeps_its_spaces_outside() -> None:
    assert ph.runs("שלום עולם x") == [
        ("NotoSansHebrew-Regular.ttf", "שלום עולם"),
        ("NotoSans-Regular.ttf", " "),
        ("NotoSans-Regular.ttf", "x"),
    ]


def test_the_placeholder_is_a_png_of_the_asked_size() -> None:
    data = ph.placeholder(320, 200, "sd15-txt2img", {"prompt": "你好 world", "seed": 3}, 1)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (320, 200)
