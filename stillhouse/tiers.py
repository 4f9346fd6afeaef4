"""Tiers: what a user may ask for and how soon it runs.

The operators define tiers in a TOML file (STILLHOUSE_INTAKE__TIERS_FILE); without one
there is a single tier, `default`, from STILLHOUSE_INTAKE__PER_MINUTE and
`…__DAILY_QUOTA`. A tier has quotas per minute, hour, day, week and month (rolling
windows: the last 60 s, 60 min, 24 h, 7 days, 30 days) and a head start:

    default = "free"

    [tiers.free]
    per_minute = 6
    per_day = 100

    [tiers.supporter]
    title = "Supporter"
    rank = 1
    per_minute = 10
    per_month = 5000
    head_start_s = 60
    servers_may_grant = true

A user's tier is the highest-ranked of the one the operators gave them (/admin tier) and
those their roles give in the server they ask from (/server tier-role, for tiers with
`servers_may_grant`); else the default.

Fair lanes without starvation: a job of a tier with a head start of H seconds is queued as
if it had arrived H seconds earlier (its `run_after`, which orders the claim). It passes
only jobs that arrived less than H seconds before it, so a job without a head start waits
at most as long as in a plain first-come queue plus the time to run the head-started jobs
that arrive in the H seconds after it; nothing waits for ever (bench/priority_lanes.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from stillhouse.config import IntakeSettings
from stillhouse.errors import StillhouseError

# How a refusal and /info say each rolling window (stillhouse.queue.admission.WINDOWS).
SPANS = {
    "minute": "the last 60 seconds",
    "hour": "the last 60 minutes",
    "day": "the last 24 hours",
    "week": "the last 7 days",
    "month": "the last 30 days",
}


class TierFileError(StillhouseError):
    """The tiers file cannot be used; the message names the file and the problem."""


class Tier(BaseModel):
    """One tier's quotas (None: no limit in that window) and lane."""

    title: str | None = None
    rank: int = 0
    per_minute: int | None = Field(default=None, ge=0)
    per_hour: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)
    per_week: int | None = Field(default=None, ge=0)
    per_month: int | None = Field(default=None, ge=0)
    head_start_s: float = Field(default=0.0, ge=0, le=86_400)
    servers_may_grant: bool = False

    def quotas(self) -> dict[str, int]:
        """The limited windows: name -> requests."""
        values = {
            "minute": self.per_minute,
            "hour": self.per_hour,
            "day": self.per_day,
            "week": self.per_week,
            "month": self.per_month,
        }
        return {name: limit for name, limit in values.items() if limit is not None}


class Tiers(BaseModel):
    """Every tier, and the one a user without another gets."""

    default: str = "default"
    tiers: dict[str, Tier]

    @model_validator(mode="after")
    def _default_exists(self) -> Tiers:
        if self.default not in self.tiers:
            raise ValueError(f"default tier {self.default!r} is not among {sorted(self.tiers)}")
        return self

    def name_of(self, given: str | None, by_roles: list[str]) -> str:
        """The tier that applies: the highest-ranked of the operators' and the roles'."""
        known = [n for n in (given, *by_roles) if n is not None and n in self.tiers]
        if not known:
            return self.default
        return max(known, key=lambda n: self.tiers[n].rank)

    def grantable(self) -> list[str]:
        """Tiers a server's managers may give by role."""
        return [name for name, tier in self.tiers.items() if tier.servers_may_grant]


def load_tiers(settings: IntakeSettings) -> Tiers:
    """The operators' tiers, or the one tier the intake settings describe."""
    if settings.tiers_file is None:
        default = Tier(per_minute=settings.per_minute, per_day=settings.daily_quota or None)
        return Tiers(default="default", tiers={"default": default})
    path: Path = settings.tiers_file
    try:
        return Tiers.model_validate(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise TierFileError(f"tiers file {path}: {exc}") from None
