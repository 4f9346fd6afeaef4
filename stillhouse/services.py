"""What a front process (bot, API) talks to, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import Engine

from stillhouse.config import Settings
from stillhouse.db.engine import make_engine
from stillhouse.filters import ContentFilter, FilterFile
from stillhouse.hints import SENDS, Hints, InProcessHints, make_hints
from stillhouse.intake import Intake
from stillhouse.locks import LockService, make_locks
from stillhouse.models_catalog import ModelCatalog
from stillhouse.moderation import Moderation
from stillhouse.preferences import GuildSettings, UserSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.fences import MessageFence
from stillhouse.queue.insights import QueueInsights
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.safety import ImageCheck, NoImageCheck, make_image_check
from stillhouse.storage import Storage, make_storage
from stillhouse.tiers import Tiers, load_tiers
from stillhouse.workflows.loader import WorkflowCatalog


@dataclass
class Services:
    """The queues, moderation, servers' settings, locks, storage, workflows and intake of
    one process."""

    settings: Settings
    engine: Engine
    queue: GenerationQueue
    sends: SendQueue
    fence: MessageFence
    insights: QueueInsights
    moderation: Moderation
    guilds: GuildSettings
    users: UserSettings
    locks: LockService
    storage: Storage
    catalog: WorkflowCatalog
    content_filter: ContentFilter
    nsfw_filter: ContentFilter = field(default_factory=lambda: ContentFilter(FilterFile()))
    tiers: Tiers | None = None  # the operators' file; None: the intake settings' one tier
    image_check: ImageCheck = field(default_factory=NoImageCheck)
    clock: Clock = utcnow
    hints: Hints = field(default_factory=InProcessHints)
    models: ModelCatalog = field(init=False)  # STILLHOUSE_WORKFLOWS__MODELS_FILE, else built in
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        self.models = ModelCatalog.load(self.settings.workflows, self.catalog)
        self.intake = Intake(
            settings=self.settings.intake,
            worker=self.settings.worker,
            storage=self.settings.storage,
            catalog=self.catalog,
            content_filter=self.content_filter,
            nsfw_filter=self.nsfw_filter,
            tiers=self.tiers,
            models=self.models,
            moderation=self.moderation,
            guilds=self.guilds,
            users=self.users,
            queue=self.queue,
            clock=self.clock,
            hints=self.hints,
        )

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        engine: Engine | None = None,
        locks: LockService | None = None,
        storage: Storage | None = None,
        clock: Clock = utcnow,
        hints: Hints | None = None,
    ) -> Services:
        """Connect to what the settings name (nothing is contacted until first use);
        `stillhouse up` passes the engine, locks and storage it shares between fronts."""
        engine = engine or make_engine(settings)
        hints = hints or make_hints(settings.memcached)
        return cls(
            settings=settings,
            engine=engine,
            queue=GenerationQueue(
                engine, settings.queue, clock=clock, told=partial(hints.bump, SENDS)
            ),
            sends=SendQueue(engine, settings.queue, clock=clock),
            fence=MessageFence(engine, settings.queue, clock=clock),
            insights=QueueInsights(engine, clock=clock),
            moderation=Moderation(engine, clock=clock),
            guilds=GuildSettings(engine, clock=clock),
            users=UserSettings(engine, clock=clock),
            locks=locks or make_locks(settings.memcached),
            storage=storage or make_storage(settings),
            catalog=WorkflowCatalog.load(settings.workflows.dir),
            content_filter=ContentFilter.from_settings(
                settings.intake.word_list(), settings.intake.filter_file
            ),
            nsfw_filter=ContentFilter(FilterFile(words=settings.safety.nsfw_list())),
            image_check=make_image_check(settings.safety),
            tiers=load_tiers(settings.intake) if settings.intake.tiers_file else None,
            clock=clock,
            hints=hints,
        )

    def close(self) -> None:
        """Drop connections (at shutdown)."""
        self.locks.close()
        self.hints.close()
        self.engine.dispose()
