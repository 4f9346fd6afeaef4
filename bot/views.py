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

CUSTOM_ID = re.compile(
    r"sh:(?P<action>[xrduvo]):(?P<job>[A-Za-z0-9_-]{1,32})(?::(?P<index>[0-9]))?"
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


_LOOK: dict[Action, tuple[str, discord.ButtonStyle]] = {
    Action.CANCEL: ("Cancel", discord.ButtonStyle.secondary),
    Action.REROLL: ("Reroll", discord.ButtonStyle.primary),
    Action.DELETE: ("Delete", discord.ButtonStyle.danger),
    Action.UPSCALE: ("Upscale", discord.ButtonStyle.secondary),
    Action.VARIATIONS: ("Variations", discord.ButtonStyle.secondary),
    Action.OPEN: ("Open", discord.ButtonStyle.secondary),
}


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
        if index is not None and count > 1:
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


def result_view(
    job: str, images: int, *, upscale: bool, variations: bool, reroll: bool = True
) -> discord.ui.View:
    """Under a result: a row of Upscale and one of Variations buttons per image (when
    those workflows exist), then Reroll and Delete."""
    view = discord.ui.View(timeout=None)
    shown = min(images, MAX_IMAGE_BUTTONS)
    rows = ((Action.UPSCALE, upscale, 0), (Action.VARIATIONS, variations, 1))
    for action, wanted, row in rows:
        if wanted:
            for index in range(shown):
                view.add_item(JobButton(action, job, index, count=shown, row=row))
    if reroll:
        view.add_item(JobButton(Action.REROLL, job, row=2))
    view.add_item(JobButton(Action.DELETE, job, row=2))
    return view


def history_view(jobs: list[str]) -> discord.ui.View:
    """Under /history: one Open button per listed result (1..n, as numbered)."""
    view = discord.ui.View(timeout=None)
    for number, job in enumerate(jobs[:MAX_HISTORY_BUTTONS], start=1):
        button = JobButton(Action.OPEN, job, row=(number - 1) // 5)
        button.item.label = f"Open {number}"
        view.add_item(button)
    return view
