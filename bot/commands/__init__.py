"""The application commands, grouped by concern; each module builds its commands around
a BotContext."""

from __future__ import annotations

from discord import app_commands

from bot.commands.admin import AdminCommands
from bot.commands.describe import describe_command
from bot.commands.jobs import job_commands
from bot.commands.me import my_commands
from bot.commands.models import models_commands
from bot.commands.serve import serve_command
from bot.commands.server import ServerCommands
from bot.context import BotContext


def all_commands(ctx: BotContext) -> list[app_commands.Command[..., None] | app_commands.Group]:  # type: ignore[type-arg]
    """Every command the bot registers."""
    return [
        serve_command(ctx),
        *job_commands(ctx),
        *my_commands(ctx),
        describe_command(ctx),
        *models_commands(ctx),
        AdminCommands(ctx),
        ServerCommands(ctx),
    ]
