"""Vary Region's links: a signed, time-limited token for one image of one job, one user
and one channel. Any change to what it grants, another secret, or time past its expiry
opens nothing; without a secret the feature is off."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from stillhouse.config import Settings, make_settings
from stillhouse.edit_links import (
    EditGrant,
    LinkRefused,
    edit_link,
    make_token,
    mask_key,
    read_token,
    submission_digest,
    submission_id,
)
from stillhouse.errors import SettingsError
from stillhouse.inputs import UploadBy, key_origin, owner_tag

pytestmark = pytest.mark.usefixtures("clean_settings_env")

SECRET = "s" * 40
NOW = 1_800_000_000.0
JOB = "AbCdEfGhIjKlMnOp"
USER, GUILD, CHANNEL, SHARD = 1_300_000_000_000_000_201, 1_300_000_000_000_000_001, 77, 1
EDIT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edit_workflows"


def settings(**api: object) -> Settings:
    return make_settings(
        api={"edit_link_secret": SECRET, "public_url": "https://sh.example/", **api}
    )


def link(on: Settings | None = None, **changed: object) -> str:
    given: dict[str, object] = {
        "job_public_id": JOB,
        "index": 2,
        "user_id": USER,
        "guild_id": GUILD,
        "channel_id": CHANNEL,
        "shard_id": SHARD,
        **changed,
    }
    made = edit_link(on or settings(), now=NOW, **given)  # type: ignore[arg-type]
    assert made is not None
    return made


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def refusal(token: str, on: Settings | None = None, now: float = NOW + 1) -> str:
    with pytest.raises(LinkRefused) as refused:
        read_token((on or settings()).api, token, now=now)
    return refused.value.why


def test_a_link_points_at_the_editor_and_grants_exactly_what_it_was_made_for() -> None:
    url = link()
    assert url.startswith("https://sh.example/edit/")
    grant = read_token(settings().api, token_of(url), now=NOW + 1)
    assert grant == EditGrant(
        job=JOB,
        index=2,
        user=USER,
        guild=GUILD,
        channel=CHANNEL,
        shard=SHARD,
        adult=False,
        expires=int(NOW) + 900,
    )
    assert len(url) < 512, "a Discord link button holds 512 characters"


def test_without_a_secret_no_link_is_made_and_none_is_accepted() -> None:
    off = make_settings()
    assert edit_link(off, JOB, 0, USER, GUILD, CHANNEL, SHARD) is None
    assert refusal(token_of(link()), on=off) == "off"


def test_an_empty_secret_means_off_and_a_short_one_is_refused_at_start() -> None:
    assert make_settings(api={"edit_link_secret": ""}).api.edit_link_secret is None
    with pytest.raises(SettingsError) as bad:
        make_settings(api={"edit_link_secret": "short"})
    assert bad.value.problems == [
        "STILLHOUSE_API__EDIT_LINK_SECRET: must be at least 32 characters "
        "(or empty: Vary Region off)"
    ]


def test_without_a_public_url_the_link_uses_the_listen_address() -> None:
    url = link(make_settings(api={"edit_link_secret": SECRET, "port": 9000}))
    assert url.startswith("http://127.0.0.1:9000/edit/")


def test_a_link_works_until_its_lifetime_ends() -> None:
    token = token_of(link(settings(edit_link_lifetime_s=600)))
    assert read_token(settings().api, token, now=NOW + 599).job == JOB
    assert refusal(token, now=NOW + 600) == "expired"


def test_a_grant_rewritten_for_another_job_user_or_expiry_is_refused() -> None:
    token = token_of(link())
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for field, value in (("job", "ZZZZZZZZZZZZZZZZ"), ("user", USER + 1), ("expires", 2**40)):
        forged = json.dumps({**claims, field: value}, separators=(",", ":")).encode()
        rewritten = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
        assert refusal(f"{rewritten}.{signature}") == "invalid", field


def test_a_token_signed_with_another_secret_or_mangled_is_refused() -> None:
    token = token_of(link())
    grant = read_token(settings().api, token, now=NOW)
    theirs = make_token(settings(edit_link_secret="t" * 40).api, grant)
    assert refusal(theirs) == "invalid"
    for mangled in (token[:-1], token + "A", token.replace(".", ""), "", "a.b", "é.é"):
        assert refusal(mangled) == "invalid", mangled


def test_an_expired_and_tampered_token_is_called_invalid_not_expired() -> None:
    token = token_of(link())
    assert refusal(token[:-2] + "xx", now=NOW + 10_000) == "invalid"


def test_each_link_refusal_is_a_sentence_that_says_what_to_do() -> None:
    with pytest.raises(LinkRefused, match=r"expired: press Vary Region .* for a new one\."):
        read_token(settings().api, token_of(link()), now=NOW + 10_000)


def test_the_link_knows_whether_the_channel_is_age_restricted() -> None:
    grant = read_token(settings().api, token_of(link(age_restricted=True)), now=NOW)
    assert grant.adult is True


def test_a_repeated_submission_is_the_same_request_and_its_mask_is_the_users_upload() -> None:
    first = submission_digest("tok", "a red hat", b"mask")
    assert first == submission_digest("tok", "a red hat", b"mask")
    assert first != submission_digest("tok", "a blue hat", b"mask")
    assert first != submission_digest("tok", "a red hat", b"other mask")
    assert submission_id(first) < 0, "never a Discord interaction id"
    key = mask_key("stillhouse/", USER, first)
    assert key_origin(key, "stillhouse/") == UploadBy(owner_tag(USER))
