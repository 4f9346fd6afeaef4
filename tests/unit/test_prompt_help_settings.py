"""Prompt help's settings: off by default, a base URL or nothing, its key a secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stillhouse.config import PromptHelpSettings, make_settings

pytestmark = pytest.mark.usefixtures("clean_settings_env")


def test_prompt_help_is_off_until_a_url_is_set_and_then_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert make_settings().prompt_help.url == ""
    monkeypatch.setenv("STILLHOUSE_PROMPT_HELP__URL", "http://vllm:8000/v1/")
    monkeypatch.setenv("STILLHOUSE_PROMPT_HELP__VISION", "true")
    given = make_settings().prompt_help
    assert given.url == "http://vllm:8000/v1" and given.vision  # no trailing slash
    assert (given.timeout_s, given.max_prompt_chars) == (6.0, 1000)


def test_a_url_that_is_no_http_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="expected an http"):
        PromptHelpSettings(url="vllm:8000")


def test_the_api_key_is_a_secret_the_logs_scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STILLHOUSE_PROMPT_HELP__API_KEY", "sk-vllm-key")
    settings = make_settings()
    assert "sk-vllm-key" in settings.secret_values()
    assert "sk-vllm-key" not in repr(settings.prompt_help)
