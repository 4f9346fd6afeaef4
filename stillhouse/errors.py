"""Every error stillhouse raises on purpose hangs from StillhouseError."""

from __future__ import annotations


class StillhouseError(Exception):
    """Root of stillhouse's own errors."""


class SettingsError(StillhouseError):
    """The environment holds a missing or bad setting; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class UnsupportedDatabase(StillhouseError):
    """The database server cannot do what the queues need (SKIP LOCKED)."""


class QueueError(StillhouseError):
    """Base of queue errors."""


class JobNotFound(QueueError):
    """No job with that id."""


class LeaseLost(QueueError):
    """The row is no longer ours: its lease expired and was reaped, or it was cancelled."""


class StorageError(StillhouseError):
    """Base of storage errors."""


class InvalidKey(StorageError):
    """A storage key that could escape its prefix or folder."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class StorageUnavailable(StorageError):
    """The store did not answer or refused the request; trying later may work."""


class BadSignature(StorageError):
    """A signed URL that is forged, tampered with or expired."""
