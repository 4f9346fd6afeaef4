"""Settings that cannot be mistyped: a variable that starts with STILLHOUSE_ but names no
setting stops the process, with the closest real name. pydantic-settings alone would
ignore it, and an operator who wrote STILLHOUSE_BOT__FILTER_WORDS for
STILLHOUSE_INTAKE__FILTER_WORDS would run with no filter and no warning."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

# Names with the prefix that are not settings: the knobs of tests and benchmarks.
TOOLING_PREFIXES = ("STILLHOUSE_TEST_", "STILLHOUSE_SOAK_", "STILLHOUSE_CHAOS_", "STILLHOUSE_RAW_")


def unknown_variables(environ: Mapping[str, str], known: Iterable[str], prefix: str) -> list[str]:
    """One sentence per variable in `environ` that has `prefix` but is none of `known`
    (names compare without case, as pydantic-settings reads them)."""
    names = {name.upper() for name in known}
    problems = []
    for variable in sorted(environ):
        name = variable.upper()
        if not name.startswith(prefix) or name in names or name.startswith(TOOLING_PREFIXES):
            continue
        closest = closest_name(name, names)
        hint = f"; did you mean {closest}?" if closest else " (README lists every setting)"
        problems.append(f"{variable}: no such setting{hint}")
    return problems


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The real name a typo most likely meant: the same field in another group first
    (STILLHOUSE_BOT__FILTER_WORDS -> STILLHOUSE_INTAKE__FILTER_WORDS), else the most
    similar spelling."""
    candidates = sorted(known)
    field = name.rsplit("__", 1)[-1]
    same_field = [k for k in candidates if "__" in name and k.rsplit("__", 1)[-1] == field]
    if same_field:
        return difflib.get_close_matches(name, same_field, n=1, cutoff=0.0)[0]
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return found[0] if found else None
