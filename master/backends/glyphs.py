"""Which characters a TrueType font can draw, read from its `cmap` table (formats 4 and
12, what every Unicode font has), so the placeholder can pick a font per character:
Pillow draws a missing character as a box and cannot say that it did."""

from __future__ import annotations

import struct

# Subtables by preference: full Unicode (format 12) first, then the Basic Plane (format 4).
_PREFERRED = ((3, 10), (0, 4), (0, 6), (3, 1), (0, 3))


def characters(font: bytes) -> frozenset[int]:
    """The code points `font` maps to a glyph other than the missing-glyph box."""
    cmap = _table(font, b"cmap")
    count = struct.unpack_from(">H", font, cmap + 2)[0]
    subtables: dict[tuple[int, int], int] = {}
    for index in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", font, cmap + 4 + 8 * index)
        subtables.setdefault((platform, encoding), cmap + offset)
    for key in _PREFERRED:
        start = subtables.get(key)
        if start is None:
            continue
        kind = struct.unpack_from(">H", font, start)[0]
        if kind == 12:
            return _format_12(font, start)
        if kind == 4:
            return _format_4(font, start)
    raise ValueError("the font has no Unicode cmap of format 4 or 12")


def _table(font: bytes, tag: bytes) -> int:
    count = struct.unpack_from(">H", font, 4)[0]
    for index in range(count):
        name, _checksum, offset, _length = struct.unpack_from(">4sIII", font, 12 + 16 * index)
        if name == tag:
            return int(offset)
    raise ValueError(f"the font has no {tag.decode()} table")


def _format_12(font: bytes, start: int) -> frozenset[int]:
    groups = struct.unpack_from(">I", font, start + 12)[0]
    found: set[int] = set()
    for index in range(groups):
        first, last, glyph = struct.unpack_from(">III", font, start + 16 + 12 * index)
        found.update(range(first + (glyph == 0), last + 1))
    return frozenset(found)


def _format_4(font: bytes, start: int) -> frozenset[int]:
    segments = struct.unpack_from(">H", font, start + 6)[0] // 2
    ends = start + 14
    starts = ends + 2 * segments + 2  # past endCode[] and reservedPad
    deltas = starts + 2 * segments
    range_offsets = deltas + 2 * segments
    found: set[int] = set()
    for index in range(segments):
        last = struct.unpack_from(">H", font, ends + 2 * index)[0]
        first = struct.unpack_from(">H", font, starts + 2 * index)[0]
        delta = struct.unpack_from(">h", font, deltas + 2 * index)[0]
        where = range_offsets + 2 * index
        range_offset = struct.unpack_from(">H", font, where)[0]
        for code in range(first, min(last, 0xFFFE) + 1):
            if range_offset == 0:
                glyph = (code + delta) & 0xFFFF
            else:
                glyph = struct.unpack_from(">H", font, where + range_offset + 2 * (code - first))[0]
                glyph = (glyph + delta) & 0xFFFF if glyph else 0
            if glyph:
                found.add(code)
    return frozenset(found)
