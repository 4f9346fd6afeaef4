"""Every way a job can fail, as one exception carrying the contract's ErrorInfo."""

from __future__ import annotations

import re

from stillhouse.schemas.worker_io import ErrorInfo

# Absolute paths say where things live on the worker; users need none of that.
_HOST_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+-]+){2,}/?")
MESSAGE_LIMIT = 1000


class JobFailure(Exception):
    """Raised by any step; the handler turns it into `{"error": ErrorInfo}`."""

    def __init__(
        self,
        type: str,
        message: str,
        *,
        retryable: bool,
        node_id: str | None = None,
        node_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.info = ErrorInfo(
            type=type,
            message=scrub(message),
            node_id=node_id,
            node_type=node_type,
            retryable=retryable,
        )


def scrub(message: str) -> str:
    """A message safe to return: host paths replaced, length capped."""
    cleaned = _HOST_PATH.sub("<path>", message).strip()
    return cleaned[:MESSAGE_LIMIT] or "no message"


def invalid_input(message: str) -> JobFailure:
    """The job's input breaks the contract or the worker's rules: retrying cannot help."""
    return JobFailure("invalid_input", message, retryable=False)


def comfy_unavailable(message: str) -> JobFailure:
    """ComfyUI died, would not start or stopped answering: another try may succeed."""
    return JobFailure("comfy_unavailable", message, retryable=True)
