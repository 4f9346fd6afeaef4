"""The buttons under queued messages and results.

Every button is one persistent DynamicItem whose custom id carries all its state
(`sh:<action>:<job public id>[:<image index>]`), so a button pressed after a restart,
on any process of any shard, still works.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Protocol, cast

import discord

from stillhouse.followups import FollowUp

CUSTOM_ID = re.compile(
    r"sh:(?P<action>[xrduvostgcwzmehjkl]):(?P<job>[A-Za-z0-9_-]{1,32})(?::(?P<index>[0-9]))?"
)
MAX_IMAGE_BUTTONS = 4
MAX_HISTORY_BUTTONS = 10


class Action(StrEnum):
    """What a button does."""

    CANCEL = "x"
    REROLL = "r"
    DELETE = "d"
    UPSCALE = "u"
    VARIATIONS = "v"
    OPEN = "o"
    VARY_SUBTLE = "s"
    VARY_STRONG = "t"
    VARY_REGION = "g"
    CREATIVE_UPSCALE = "c"
    ZOOM_OUT_15 = "z"
    ZOOM_OUT_2 = "w"
    REMIX = "m"
    ENHANCE = "e"
    PAN_LEFT = "h"  # h j k l: as vi moves
    PAN_DOWN = "j"
    PAN_UP = "k"
    PAN_RIGHT = "l"


_LOOK: dict[Action, tuple[str, discord.ButtonStyle]] = {
    Action.CANCEL: ("Cancel", discord.ButtonStyle.secondary),
    Action.REROLL: ("Reroll", discord.ButtonStyle.primary),
    Action.DELETE: ("Delete", discord.ButtonStyle.danger),
    Action.UPSCALE: ("Upscale", discord.ButtonStyle.secondary),
    Action.VARIATIONS: ("Variations", discord.ButtonStyle.secondary),
    Action.OPEN: ("Open", discord.ButtonStyle.secondary),
    Action.VARY_SUBTLE: ("Vary (Subtle)", discord.ButtonStyle.secondary),
    Action.VARY_STRONG: ("Vary (Strong)", discord.ButtonStyle.secondary),
    Action.VARY_REGION: ("Vary (Region)", discord.ButtonStyle.secondary),
    Action.CREATIVE_UPSCALE: ("Upscale (Creative)", discord.ButtonStyle.secondary),
    Action.ZOOM_OUT_15: ("Zoom Out 1.5x", discord.ButtonStyle.secondary),
    Action.ZOOM_OUT_2: ("Zoom Out 2x", discord.ButtonStyle.secondary),
    Action.REMIX: ("Remix", discord.ButtonStyle.primary),
    Action.ENHANCE: ("✨ Enhance", discord.ButtonStyle.secondary),
    Action.PAN_LEFT: ("⬅️", discord.ButtonStyle.secondary),
    Action.PAN_RIGHT: ("➡️", discord.ButtonStyle.secondary),
    Action.PAN_UP: ("⬆️", discord.ButtonStyle.secondary),
    Action.PAN_DOWN: ("⬇️", discord.ButtonStyle.secondary),
}
# Under a single image: what can be done with it, Midjourney's rows.
SINGLE_IMAGE_ROWS = (
    (Action.VARY_SUBTLE, Action.VARY_STRONG, Action.VARY_REGION),
    (Action.UPSCALE, Action.CREATIVE_UPSCALE, Action.ZOOM_OUT_15, Action.ZOOM_OUT_2),
    (Action.PAN_LEFT, Action.PAN_RIGHT, Action.PAN_UP, Action.PAN_DOWN),
)
# The buttons that ask for a follow-up of a result (stillhouse.followups).
FOLLOW_UPS = {
    Action.UPSCALE: FollowUp.UPSCALE,
    Action.VARIATIONS: FollowUp.VARIATIONS,
    Action.VARY_SUBTLE: FollowUp.VARY_SUBTLE,
    Action.VARY_STRONG: FollowUp.VARY_STRONG,
    Action.VARY_REGION: FollowUp.VARY_REGION,
    Action.CREATIVE_UPSCALE: FollowUp.CREATIVE_UPSCALE,
    Action.ZOOM_OUT_15: FollowUp.ZOOM_OUT_15,
    Action.ZOOM_OUT_2: FollowUp.ZOOM_OUT_2,
    Action.PAN_LEFT: FollowUp.PAN_LEFT,
    Action.PAN_RIGHT: FollowUp.PAN_RIGHT,
    Action.PAN_UP: FollowUp.PAN_UP,
    Action.PAN_DOWN: FollowUp.PAN_DOWN,
}
GRID_ROWS = (Action.UPSCALE, Action.VARIATIONS)  # U1..U4, V1..V4
LAST_ROW = (Action.REROLL, Action.REMIX, Action.ENHANCE, Action.DELETE)


class ButtonPresses(Protocol):
    """What handles a pressed button (the bot's Buttons)."""

    async def press(
        self, interaction: discord.Interaction, action: Action, job: str, index: int | None
    ) -> None:
        """Do what the button says."""


class _HasButtons(Protocol):
    buttons: ButtonPresses


def custom_id(action: Action, job: str, index: int | None = None) -> str:
    """The id Discord stores on the button."""
    return f"sh:{action}:{job}" + ("" if index is None else f":{index}")


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID):
    """A button acting on one job (and, for Upscale and Variations, one of its images)."""

    def __init__(
        self,
        action: Action,
        job: str,
        index: int | None = None,
        *,
        count: int = 1,
        row: int | None = None,
    ) -> None:
        label, style = _LOOK[action]
        if action is Action.UPSCALE and count == 1 and index is not None:
            label = "Upscale (2x)"
        if action in (Action.UPSCALE, Action.VARIATIONS) and index is not None and count > 1:
            label = f"{label[0]}{index + 1}"  # U1..U4, V1..V4 under a grid of images
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label, style=style, custom_id=custom_id(action, job, index), row=row
        )
        super().__init__(button)
        self.action = action
        self.job = job
        self.index = index

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> JobButton:
        index = match["index"]
        return cls(Action(match["action"]), match["job"], None if index is None else int(index))

    async def callback(self, interaction: discord.Interaction) -> None:
        client = cast(_HasButtons, interaction.client)
        await client.buttons.press(interaction, self.action, self.job, self.index)


def queued_view(job: str) -> discord.ui.View:
    """Under the queued message: Cancel."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(Action.CANCEL, job))
    return view


def result_view(job: str, images: int, offered: set[Action]) -> discord.ui.View:
    """Under a result, the buttons whose actions are `offered` for it: under a grid, a row
    of Upscale and one of Variations buttons per image; under a single image, Vary
    (Subtle, Strong, Region), then Upscale (2x, Creative) and Zoom Out; last Reroll,
    Remix, Enhance and Delete (always)."""
    view = discord.ui.View(timeout=None)
    if images > 1:
        shown = min(images, MAX_IMAGE_BUTTONS)
        for row, action in enumerate(a for a in GRID_ROWS if a in offered):
            for index in range(shown):
                view.add_item(JobButton(action, job, index, count=shown, row=row))
        first_free = sum(1 for a in GRID_ROWS if a in offered)
    else:
        rows = [[a for a in row if a in offered] for row in SINGLE_IMAGE_ROWS]
        rows = [row for row in rows if row]
        for number, actions in enumerate(rows):
            for action in actions:
                view.add_item(JobButton(action, job, 0, row=number))
        first_free = len(rows)
    for action in LAST_ROW:
        if action in offered or action is Action.DELETE:
            view.add_item(JobButton(action, job, row=first_free))
    return view


def history_view(jobs: list[str]) -> discord.ui.View:
    """Under /history: one Open button per listed result (1..n, as numbered)."""
    view = discord.ui.View(timeout=None)
    for number, job in enumerate(jobs[:MAX_HISTORY_BUTTONS], start=1):
        button = JobButton(Action.OPEN, job, row=(number - 1) // 5)
        button.item.label = f"Open {number}"
        view.add_item(button)
    return view
