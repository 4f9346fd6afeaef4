"""Image storage behind one interface: an S3-compatible bucket or a local folder."""

from stillhouse.storage.base import Storage, StoredObject, new_key, validate_key
from stillhouse.storage.factory import make_storage

__all__ = ["Storage", "StoredObject", "make_storage", "new_key", "validate_key"]
