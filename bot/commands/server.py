"""/server: a server's own settings, set by its managers and in force at once on every
shard (stillhouse.preferences): the channels /serve works in, its default workflow, mode and
aspect, and its own filter words and patterns on top of the operators' lists. Bans, pause
and stats are under /admin."""

from __future__ import annotations

from collections.abc import Callable

import discord
from discord import app_commands
from pydantic import ValidationError

from bot.choices import MAX_CHOICES, default_workflow, workflow_choices
from bot.commands.managed import ManagedGroup
from bot.commands.serve import ASPECTS, MODES
from bot.context import BotContext
from bot.replies import explain
from stillhouse.intake import Refusal
from stillhouse.schemas.guilds import (
    MAX_CHANNELS,
    MAX_PATTERNS,
    MAX_RULE_CHARS,
    MAX_WORDS,
    GuildConfig,
    pattern_problem,
)

FLAGGED = [
    app_commands.Choice(name="Send as a spoiler", value="spoiler"),
    app_commands.Choice(name="Withhold", value="withhold"),
]
UNCHECKED = [
    app_commands.Choice(name="Send it", value="send"),
    app_commands.Choice(name="Withhold", value="withhold"),
]


class ServerCommands(ManagedGroup):
    """The /server group bound to this process's services."""

    def __init__(self, ctx: BotContext) -> None:
        super().__init__(ctx, name="server", description="This server's settings for the image bot")

    @app_commands.command(name="show", description="This server's settings")
    async def show(self, interaction: discord.Interaction) -> None:
        def work(guild: int) -> str:
            config = self._services.guilds.get(guild)
            shown = describe(config, self._default_workflow())
            return shown + "\n" + describe_images(config, self._services.image_check.active)

        await self._run(interaction, "show", work)

    @app_commands.command(name="channel", description="Take requests in a channel, or stop")
    @app_commands.describe(
        channel="The channel",
        allowed="True: /serve works there (then only in the allowed channels); False: not",
    )
    async def channel(
        self,
        interaction: discord.Interaction,
        channel: app_commands.AppCommandChannel,
        allowed: bool,
    ) -> None:
        def edit(config: GuildConfig) -> GuildConfig:
            if not allowed and not config.channels:
                raise Refusal(
                    "/serve works in every channel here. To keep it out of some, allow the "
                    "channels where it should work: /server channel allowed:True."
                )
            others = [c for c in config.channels if c != channel.id]
            chosen = [*others, channel.id] if allowed else others
            return config.model_copy(update={"channels": chosen})

        def work(guild: int) -> str:
            config = self._change(guild, interaction, edit)
            if not config.channels:
                return "/serve works in every channel of this server."
            return "/serve works only in " + _channels(config) + "."

        await self._run(interaction, "channel", work)

    @app_commands.command(name="all-channels", description="Take requests in every channel")
    async def all_channels(self, interaction: discord.Interaction) -> None:
        def work(guild: int) -> str:
            self._change(guild, interaction, lambda c: c.model_copy(update={"channels": []}))
            return "/serve works in every channel of this server."

        await self._run(interaction, "all_channels", work)

    @app_commands.command(name="defaults", description="What /serve uses when a user does not say")
    @app_commands.describe(
        workflow="Default workflow",
        mode="Default mode",
        aspect="Default shape",
        reset="Back to the bot's own defaults",
    )
    @app_commands.choices(mode=MODES, aspect=ASPECTS)
    async def defaults(
        self,
        interaction: discord.Interaction,
        workflow: str | None = None,
        mode: app_commands.Choice[str] | None = None,
        aspect: app_commands.Choice[str] | None = None,
        reset: bool = False,
    ) -> None:
        def edit(config: GuildConfig) -> GuildConfig:
            if reset:
                return config.model_copy(update={"workflow": None, "mode": None, "aspect": None})
            changes: dict[str, str] = {}
            if workflow is not None:
                changes["workflow"] = default_workflow(self._services.catalog, workflow)
            if mode is not None:
                changes["mode"] = mode.value
            if aspect is not None:
                changes["aspect"] = aspect.value
            return config.model_copy(update=changes)

        def work(guild: int) -> str:
            config = self._change(guild, interaction, edit)
            return describe_defaults(config, self._default_workflow())

        await self._run(interaction, "defaults", work)

    @defaults.autocomplete("workflow")
    async def _workflows(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return workflow_choices(self._services.catalog, current)

    @app_commands.command(
        name="images", description="Images the check flags, or cannot check, outside NSFW channels"
    )
    @app_commands.describe(
        flagged="An image the image check flags", unchecked="An image it could not check (down)"
    )
    @app_commands.choices(flagged=FLAGGED, unchecked=UNCHECKED)
    async def images(
        self,
        interaction: discord.Interaction,
        flagged: app_commands.Choice[str] | None = None,
        unchecked: app_commands.Choice[str] | None = None,
    ) -> None:
        changes = {
            key: choice.value
            for key, choice in (("flagged_images", flagged), ("unchecked_images", unchecked))
            if choice is not None
        }

        def work(guild: int) -> str:
            config = self._change(guild, interaction, lambda c: c.model_copy(update=changes))
            return describe_images(config, self._services.image_check.active)

        await self._run(interaction, "images", work)

    @app_commands.command(name="tier-role", description="Give a role's members a tier here")
    @app_commands.describe(role="The role", tier="A tier the bot's operators let servers give")
    async def tier_role(
        self, interaction: discord.Interaction, role: discord.Role, tier: str | None = None
    ) -> None:
        grantable = self._services.intake.current_tiers().grantable()
        if tier is not None and tier not in grantable:
            offered = ", ".join(grantable) or "none"
            await explain(
                interaction,
                Refusal(f"“{tier}” is not a tier servers can give (they can give: {offered})."),
            )
            return

        def edit(config: GuildConfig) -> GuildConfig:
            given = {k: v for k, v in config.role_tiers.items() if k != str(role.id)}
            if tier is not None:
                given[str(role.id)] = tier
            return config.model_copy(update={"role_tiers": given})

        def work(guild: int) -> str:
            self._change(guild, interaction, edit)
            if tier is None:
                return f"{role.mention} no longer gives a tier here."
            return f"Members of {role.mention} have the {tier} tier here."

        await self._run(interaction, "tier_role", work)

    @tier_role.autocomplete("tier")
    async def _grantable(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=name, value=name)
            for name in self._services.intake.current_tiers().grantable()
            if current.lower() in name.lower()
        ][:MAX_CHOICES]

    @app_commands.command(name="filter-add", description="Refuse prompts with this word")
    @app_commands.describe(
        text="A word (whole words, any case) or, with pattern, a regular expression",
        pattern="True: text is a regular expression",
    )
    async def filter_add(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_RULE_CHARS],
        pattern: bool = False,
    ) -> None:
        rule = text.strip()

        def edit(config: GuildConfig) -> GuildConfig:
            if pattern:
                problem = pattern_problem(rule)
                if problem:
                    raise Refusal(problem[0].upper() + problem[1:] + ".")
                return config.model_copy(
                    update={"filter_patterns": _added(config.filter_patterns, rule)}
                )
            return config.model_copy(update={"filter_words": _added(config.filter_words, rule)})

        def work(guild: int) -> str:
            config = self._change(guild, interaction, edit)
            kind = "pattern" if pattern else "word"
            return f"Prompts matching the {kind} “{rule}” are refused here. " + _filters(config)

        await self._run(interaction, "filter_add", work)

    @app_commands.command(name="filter-remove", description="Stop refusing a word or pattern")
    @app_commands.describe(text="The word or pattern, as it was added")
    async def filter_remove(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, MAX_RULE_CHARS]
    ) -> None:
        rule = text.strip()
        removed: list[bool] = []

        def edit(config: GuildConfig) -> GuildConfig:
            words = [w for w in config.filter_words if w != rule]
            patterns = [p for p in config.filter_patterns if p != rule]
            before = len(config.filter_words) + len(config.filter_patterns)
            removed.append(len(words) + len(patterns) < before)
            return config.model_copy(update={"filter_words": words, "filter_patterns": patterns})

        def work(guild: int) -> str:
            config = self._change(guild, interaction, edit)
            if not removed[-1]:
                return f"“{rule}” is not on this server's list. " + _filters(config)
            return f"“{rule}” is no longer refused here. " + _filters(config)

        await self._run(interaction, "filter_remove", work)

    def _change(
        self,
        guild: int,
        interaction: discord.Interaction,
        edit: Callable[[GuildConfig], GuildConfig],
    ) -> GuildConfig:
        try:
            return self._services.guilds.change(guild, interaction.user.id, edit)
        except ValidationError as exc:  # over a limit: the first problem, in words
            raise Refusal(_first_problem(exc)) from None

    def _default_workflow(self) -> str:
        return self._services.settings.intake.default_workflow


def describe(config: GuildConfig, bot_default: str) -> str:
    """The server's settings as its managers read them."""
    where = _channels(config) if config.channels else "every channel"
    return "\n".join(
        [
            f"/serve works in: {where}.",
            describe_defaults(config, bot_default),
            _filters(config),
        ]
    )


def describe_images(config: GuildConfig, checked: bool) -> str:
    """The server's choices for images outside age-restricted channels."""
    flagged = {"spoiler": "sent as spoilers", "withhold": "withheld"}[config.flagged_images]
    unchecked = {"send": "sent", "withhold": "withheld"}[config.unchecked_images]
    text = (
        f"Images outside age-restricted channels: flagged ones {flagged}; ones the image "
        f"check could not look at {unchecked}."
    )
    if not checked:
        text += " (The bot's operators set no image check: no image is checked now.)"
    return text


def describe_defaults(config: GuildConfig, bot_default: str) -> str:
    workflow = config.workflow or f"{bot_default} (the bot's default)"
    mode = config.mode or "the workflow's own"
    aspect = config.aspect or "the workflow's own"
    return f"Defaults: workflow {workflow}, mode {mode}, aspect {aspect}."


def _channels(config: GuildConfig) -> str:
    return ", ".join(f"<#{c}>" for c in config.channels)


def _filters(config: GuildConfig) -> str:
    if not (config.filter_words or config.filter_patterns):
        return "This server adds no words or patterns to the bot's filter."
    parts = []
    if config.filter_words:
        parts.append("words " + ", ".join(f"“{w}”" for w in config.filter_words))
    if config.filter_patterns:
        parts.append("patterns " + ", ".join(f"“{p}”" for p in config.filter_patterns))
    return "This server also refuses " + " and ".join(parts) + "."


def _added(rules: list[str], rule: str) -> list[str]:
    return rules if rule in rules else [*rules, rule]


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "setting"
    limits = {
        "channels": f"A server can allow {MAX_CHANNELS} channels at most.",
        "filter_words": f"A server can add {MAX_WORDS} words at most.",
        "filter_patterns": f"A server can add {MAX_PATTERNS} patterns at most.",
    }
    return limits.get(field, str(error["msg"]))
