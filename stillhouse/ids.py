"""Identifiers: public job ids, partition keys, lease owners."""

from __future__ import annotations

import os
import secrets
import socket
import zlib


def new_public_id() -> str:
    """A job id safe to show users: 96 random bits, URL-safe, 16 characters."""
    return secrets.token_urlsafe(12)


def partition_of(public_id: str, partitions: int) -> int:
    """Stable partition of a job (crc32, not hash(): that differs between processes)."""
    return zlib.crc32(public_id.encode()) % partitions


def new_owner(role: str) -> str:
    """A lease owner unique to this process: role, host, pid and 48 random bits.

    At most 12 + 24 + 7 + 12 characters and separators: fits the 64-character column
    without ever cutting into the random tail.
    """
    host = socket.gethostname()[:24]
    return f"{role[:12]}-{host}-{os.getpid()}-{secrets.token_hex(6)}"
