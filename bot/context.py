"""What every command handler needs, handed to the command factories."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.progress import ProgressTracker
from stillhouse.intake import Intake
from stillhouse.prompt_help import PromptHelper
from stillhouse.services import Services


@dataclass
class BotContext:
    """Services plus the intake, the progress tracker and prompt help of this process."""

    services: Services
    intake: Intake
    tracker: ProgressTracker
    prompt_help: PromptHelper = field(init=False)

    def __post_init__(self) -> None:
        # From the settings as they are when the bot is built (tests point them at a double).
        self.prompt_help = PromptHelper(self.services.settings.prompt_help)
