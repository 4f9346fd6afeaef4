"""Pick the storage backend the settings name."""

from __future__ import annotations

from stillhouse.config import Settings
from stillhouse.storage.base import Storage


def make_storage(settings: Settings) -> Storage:
    """S3 when `STILLHOUSE_STORAGE__BACKEND=s3`, else the local folder."""
    if settings.storage.backend == "s3":
        from stillhouse.storage.s3 import S3Storage

        return S3Storage(settings.storage)
    from stillhouse.storage.local import LocalStorage

    return LocalStorage(settings.images_dir(), settings.storage)
