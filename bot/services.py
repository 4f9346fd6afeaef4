"""Everything a bot process talks to, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from bot.filters import ContentFilter
from stillhouse.config import Settings
from stillhouse.db.engine import make_engine
from stillhouse.locks import LockService, make_locks
from stillhouse.moderation import Moderation
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.insights import QueueInsights
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.storage import Storage, make_storage
from stillhouse.workflows.loader import WorkflowCatalog


@dataclass
class Services:
    """The queues, moderation, locks, storage and workflows of one bot process."""

    settings: Settings
    engine: Engine
    queue: GenerationQueue
    sends: SendQueue
    insights: QueueInsights
    moderation: Moderation
    locks: LockService
    storage: Storage
    catalog: WorkflowCatalog
    content_filter: ContentFilter
    clock: Clock = utcnow

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock = utcnow) -> Services:
        """Connect to what the settings name (nothing is contacted until first use)."""
        engine = make_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            queue=GenerationQueue(engine, settings.queue, clock=clock),
            sends=SendQueue(engine, settings.queue, clock=clock),
            insights=QueueInsights(engine, clock=clock),
            moderation=Moderation(engine, clock=clock),
            locks=make_locks(settings.memcached),
            storage=make_storage(settings),
            catalog=WorkflowCatalog.load(settings.workflows.dir),
            content_filter=ContentFilter.from_settings(
                settings.bot.word_list(), settings.bot.filter_file
            ),
            clock=clock,
        )

    def close(self) -> None:
        """Drop connections (at shutdown)."""
        self.locks.close()
        self.engine.dispose()
