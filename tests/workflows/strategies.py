"""Hypothesis strategies for a manifest's parameters: values inside and outside bounds."""

from __future__ import annotations

from hypothesis import strategies as st

from stillhouse.schemas.manifest import Parameter, ParamType

_KEY_PART = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,11}", fullmatch=True)
IMAGE_SOURCES = st.one_of(
    st.builds(
        lambda host, path, ext: f"https://{host}/attachments/{path}.{ext}",
        st.sampled_from(["cdn.discordapp.com", "media.discordapp.net"]),
        _KEY_PART,
        st.sampled_from(["png", "jpg", "webp", "gif"]),
    ),
    st.builds(lambda a, b: f"stillhouse/{a}/{b}.png", _KEY_PART, _KEY_PART),
)


def valid_value(parameter: Parameter) -> st.SearchStrategy[object]:
    """Any value the manifest declares acceptable."""
    kind = parameter.type
    if kind is ParamType.STRING:
        text = st.text(max_size=min(parameter.max_length or 2000, 300))
        return text.filter(str.strip) if parameter.required else text
    if kind in (ParamType.INT, ParamType.SEED):
        low, high, step = int(parameter.min or 0), int(parameter.max or 0), parameter.step or 1
        return st.integers(0, (high - low) // step).map(lambda k: low + k * step)
    if kind is ParamType.FLOAT:
        return st.floats(parameter.min, parameter.max, allow_nan=False, allow_infinity=False)
    if kind is ParamType.BOOL:
        return st.booleans()
    if kind is ParamType.CHOICE:
        return st.sampled_from(parameter.choices or [])
    return IMAGE_SOURCES


def invalid_value(parameter: Parameter) -> st.SearchStrategy[object]:
    """Values the manifest refuses."""
    kind = parameter.type
    wrong_type = st.sampled_from([[1], {"x": 1}])
    if kind is ParamType.STRING:
        limit = parameter.max_length or 2000
        too_long = st.text(min_size=limit + 1, max_size=limit + 5)
        blank = st.sampled_from(["", "   ", "\n"]) if parameter.required else st.nothing()
        return st.one_of(too_long, blank, st.integers())
    if kind in (ParamType.INT, ParamType.SEED, ParamType.FLOAT):
        low, high = parameter.min, parameter.max
        options = [wrong_type, st.sampled_from(["many", "1e", True])]
        if low is not None:
            options.append(st.integers(max_value=int(low) - 1))
        if high is not None:
            options.append(st.integers(min_value=int(high) + 1))
        if parameter.step and parameter.step > 1:
            base = int(low or 0)
            options.append(st.integers(0, 50).map(lambda k: base + k * parameter.step + 1))  # type: ignore[operator]
        if kind is ParamType.FLOAT:
            options.append(st.sampled_from([float("nan"), float("inf")]))
        else:
            options.append(st.sampled_from([1.5, 2.25]))
        return st.one_of(options)
    if kind is ParamType.CHOICE:
        return st.text(min_size=1).filter(lambda v: v not in (parameter.choices or []))
    if kind is ParamType.BOOL:
        return st.sampled_from(["maybe", 3, [True]])
    return st.sampled_from(
        [
            "http://cdn.discordapp.com/a.png",
            "ftp://x/y.png",
            "../etc/passwd",
            "/abs/key.png",
            "a b.png",
            7,
        ]
    )
