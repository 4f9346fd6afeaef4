"""What every command handler needs, handed to the command factories."""

from __future__ import annotations

from dataclasses import dataclass

from bot.progress import ProgressTracker
from stillhouse.intake import Intake
from stillhouse.services import Services


@dataclass
class BotContext:
    """Services plus the intake and the progress tracker of this process."""

    services: Services
    intake: Intake
    tracker: ProgressTracker
