"""Structured log lines carry the job's public id; secrets never reach them."""

from __future__ import annotations

import io
import json
import logging
import threading

from stillhouse.config import make_settings
from stillhouse.logs import REDACTED, configure_logging, log_context

SECRET_URL = "mysql+pymysql://app:s3cr3t-pass@db:3306/q"


def capture(fmt: str = "json") -> io.StringIO:
    stream = io.StringIO()
    settings = make_settings(
        database={"url": SECRET_URL},
        storage={"s3_access_key_id": "AKIAEXAMPLE", "s3_secret_access_key": "very-secret-key"},
        log={"format": fmt, "level": "DEBUG"},
    )
    configure_logging(settings, stream)
    return stream


def test_lines_are_json_with_action_and_public_id() -> None:
    stream = capture()
    log = logging.getLogger("stillhouse.test")
    with log_context(public_id="AbCdEf0123456789", process="master"):
        log.info("claimed", extra={"action": "job.claim", "attempt": 2})
    log.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "claimed" and first["level"] == "INFO"
    assert first["action"] == "job.claim" and first["public_id"] == "AbCdEf0123456789"
    assert first["attempt"] == 2 and first["process"] == "master"
    assert "public_id" not in second


def test_context_is_per_thread() -> None:
    stream = capture()
    log = logging.getLogger("stillhouse.test")

    def other() -> None:
        log.info("from thread")

    with log_context(public_id="job-a"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert "public_id" not in line


def test_configured_secrets_are_scrubbed_from_every_line() -> None:
    for fmt in ("json", "text"):
        stream = capture(fmt)
        log = logging.getLogger("stillhouse.test")
        log.warning("connecting to %s", SECRET_URL, extra={"key": "very-secret-key"})
        try:
            raise RuntimeError("auth failed for AKIAEXAMPLE")
        except RuntimeError:
            log.exception("boom")
        text = stream.getvalue()
        for secret in ("s3cr3t-pass", "very-secret-key", "AKIAEXAMPLE"):
            assert secret not in text, fmt
        assert REDACTED in text
