"""The Discord emulator, driven by the real discord.py: login, sync, slash commands, follow-ups
with files, components, sharding, faults, Discord's clock rules, enforced nonces, history,
edit revisions and write hooks."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

import discord
import pytest
import requests
from discord import app_commands

from tests.doubles.discord import (
    AttachmentSpec,
    ClientThread,
    DiscordEmulator,
    GuildSpec,
    Interaction,
    Message,
    Revision,
    WriteEvent,
)
from tests.support import wait_until

# (id >> 22) is even for GUILD and odd for OTHER_GUILD: shards 0 and 1 of 2.
GUILD = (1_200_000_000_000_000_000 >> 23) << 23
OTHER_GUILD = GUILD + (1 << 22)
CHANNEL, OTHER_CHANNEL, HIDDEN_CHANNEL, NO_HISTORY_CHANNEL = (
    1_200_000_000_000_000_101,
    1_200_000_000_000_000_102,
    1_200_000_000_000_000_103,
    1_200_000_000_000_000_104,
)
OWNER, USER, ADMIN = 1_200_000_000_000_000_201, 1_200_000_000_000_000_202, 1_200_000_000_000_000_203
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

Results = dict[str, Any]


@pytest.fixture
def emu() -> Iterator[DiscordEmulator]:
    guilds = [
        GuildSpec(
            id=GUILD,
            name="Main",
            channel_ids=[CHANNEL],
            owner_id=OWNER,
            member_ids=[USER],
            admin_ids={ADMIN},
            upload_limit=2**20,
            no_access_channel_ids=[HIDDEN_CHANNEL],
            no_history_channel_ids=[NO_HISTORY_CHANNEL],
        ),
        GuildSpec(id=OTHER_GUILD, name="Other", channel_ids=[OTHER_CHANNEL], owner_id=OWNER),
    ]
    with DiscordEmulator(guilds=guilds) as emulator, emulator.patched():
        yield emulator


class Again(discord.ui.View):
    """A persistent view: no timeout, fixed custom_id, registered with `client.add_view`."""

    def __init__(self, results: Results) -> None:
        super().__init__(timeout=None)
        self.results = results

    @discord.ui.button(label="Again", custom_id="stillhouse:again")
    async def again(
        self, interaction: discord.Interaction, _button: discord.ui.Button[Any]
    ) -> None:
        self.results["clicked_by"] = interaction.user.id  # before answering: the test waits on it
        await interaction.response.send_message("again!", ephemeral=True)


class Retry(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"retry:(?P<job>\d+)"):
    """A dynamic item: the job id lives in the custom_id, so it survives restarts."""

    results: ClassVar[Results] = {}

    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Retry", custom_id=f"retry:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any, /
    ) -> Retry:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        Retry.results["retried"] = self.job
        await interaction.response.edit_message(content=f"retrying job {self.job}", view=None)


def make_bot(
    results: Results,
    *,
    sharded: bool = False,
    body: Callable[[discord.Interaction, str, int], Any] | None = None,
) -> discord.Client:
    """A client with /serve (prompt, count, optional image) and /admin pause, synced globally."""
    options: dict[str, Any] = {"intents": discord.Intents.default(), "guild_ready_timeout": 0.05}
    client: discord.Client
    if sharded:
        client = FastShardedClient(shard_count=2, shard_ids=[0, 1], **options)
    else:
        client = discord.Client(**options)
    tree = app_commands.CommandTree(client)

    @tree.command(name="serve", description="Make an image")
    async def serve(
        interaction: discord.Interaction,
        prompt: str,
        count: int = 1,
        image: discord.Attachment | None = None,
    ) -> None:
        results.setdefault("serve", []).append(interaction)
        if image is not None:
            results["image"] = await image.read()
        if body is not None:
            await body(interaction, prompt, count)
            return
        await interaction.response.send_message(f"queued {prompt!r} x{count}")
        view = Again(results)
        view.add_item(Retry(7))
        file = discord.File(io.BytesIO(PNG), filename="out.png")
        await interaction.followup.send("done", file=file, view=view)
        await interaction.edit_original_response(content=f"served {prompt!r}")

    @serve.autocomplete("prompt")
    async def prompts(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=p, value=p) for p in ("sdxl", "sd15") if current in p]

    admin = app_commands.Group(name="admin", description="Admin commands")

    @admin.command(name="pause", description="Pause the queue")
    async def pause(interaction: discord.Interaction, minutes: int) -> None:
        assert isinstance(interaction.user, discord.Member)
        allowed = interaction.user.guild_permissions.manage_guild
        results["pause"] = (minutes, allowed)
        await interaction.response.send_message("paused" if allowed else "no", ephemeral=True)

    tree.add_command(admin)

    async def setup_hook() -> None:
        client.add_view(Again(results))
        client.add_dynamic_items(Retry)
        results["synced"] = await tree.sync()

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    return client


class FastShardedClient(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py sleeps 5 s between shards; Discord's real limit is per bucket


def test_slash_command_reply_and_followup_with_file(emu: DiscordEmulator) -> None:
    results: Results = {}
    with ClientThread(make_bot(results), emu.token):
        assert [c["name"] for c in emu.commands[None]] == ["serve", "admin"]
        ix = emu.slash_command(
            GUILD, CHANNEL, USER, "serve", options={"prompt": "a cat", "count": 2}
        )

        response = ix.wait_response()
        assert (response["type"], response["data"]["content"]) == (4, "queued 'a cat' x2")
        followup = ix.wait_followups(1)[0]
        attachment = followup.attachments[0]
        assert (attachment.filename, attachment.content_type, attachment.data) == (
            "out.png",
            "image/png",
            PNG,
        )
        assert requests.get(attachment.url, timeout=5).content == PNG  # as a worker fetches it
        buttons = [c["custom_id"] for row in followup.components for c in row["components"]]
        assert buttons == ["stillhouse:again", "retry:7"]
        assert (followup.via, followup.interaction_id, followup.ephemeral) == (
            "followup",
            ix.id,
            False,
        )
        assert ix.delivered_to == [(0, 1)]
        bot_side = results["serve"][0]
        assert (bot_side.guild_id, bot_side.channel_id, bot_side.user.id) == (GUILD, CHANNEL, USER)


def test_sharded_client_gets_each_guild_on_its_shard(emu: DiscordEmulator) -> None:
    results: Results = {}
    with ClientThread(make_bot(results, sharded=True), emu.token):
        assert sorted((s.shard_id, s.shard_count) for s in emu.sessions) == [(0, 2), (1, 2)]
        first = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        second = emu.slash_command(
            OTHER_GUILD, OTHER_CHANNEL, OWNER, "serve", options={"prompt": "b"}
        )
        first.wait_followups(1)
        second.wait_followups(1)
        assert first.delivered_to == [(0, 2)]
        assert second.delivered_to == [(1, 2)]


def test_two_replicas_of_a_shard_both_get_the_event_and_one_ack_wins(
    emu: DiscordEmulator,
) -> None:
    outcomes: list[str] = []

    async def ack(interaction: discord.Interaction, _prompt: str, _count: int) -> None:
        try:
            await interaction.response.send_message("mine")
            outcomes.append("acked")
        except discord.HTTPException as exc:
            outcomes.append(f"{exc.status} {exc.code}")

    # One ClientThread for both: see tests/doubles/discord/runner.py for why.
    with ClientThread(make_bot({}, body=ack), emu.token, make_bot({}, body=ack)):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "x"})
        wait_until(lambda: len(outcomes) == 2, timeout_s=5, what="both replicas answering")
        assert ix.delivered_to == [(0, 1), (0, 1)]
        assert sorted(outcomes) == ["400 40060", "acked"]


def test_click_on_followup_reaches_persistent_view_and_dynamic_item(emu: DiscordEmulator) -> None:
    results: Results = {}
    seen: list[str] = []
    client = make_bot(results)

    @client.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        seen.append(str(data.get("custom_id") or data.get("name")))

    with ClientThread(client, emu.token):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a fox"})
        followup = ix.wait_followups(1)[0]
        wait_until(lambda: ix.original is not None and ix.original.edits == 1, timeout_s=5)
        assert ix.original is not None
        assert (ix.original.content, ix.original.via) == ("served 'a fox'", "callback")

        click = emu.click(followup, "stillhouse:again", OWNER)
        assert click.wait_response()["type"] == 4
        assert click.original is not None and click.original.ephemeral
        assert results["clicked_by"] == OWNER

        retry = emu.click(followup, "retry:7", USER)
        assert retry.wait_response()["type"] == 7  # UPDATE_MESSAGE: edits the message clicked
        assert (followup.content, followup.components, followup.edits) == ("retrying job 7", [], 1)
        assert Retry.results["retried"] == 7
        assert seen == ["serve", "stillhouse:again", "retry:7"]


def test_rate_limit_is_retried_and_forbidden_raises(emu: DiscordEmulator) -> None:
    client = make_bot({})
    with ClientThread(client, emu.token) as bot:
        channel = client.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        emu.fail_next("POST", rf"/channels/{CHANNEL}/messages$", 429, retry_after=0.2)
        sent = bot.call(channel.send(f"hello <@{USER}>"))
        posted = emu.channel_messages(CHANNEL)
        assert [(m.id, m.content, m.mentions_user_ids) for m in posted] == [
            (sent.id, f"hello <@{USER}>", [USER])
        ]
        posts = [r.status for r in emu.requests if r.method == "POST" and "/messages" in r.path]
        assert posts == [429, 200]

        emu.fail_next("POST", rf"/channels/{CHANNEL}/messages$", 403)
        with pytest.raises(discord.Forbidden) as forbidden:
            bot.call(channel.send("again"))
        assert (forbidden.value.status, forbidden.value.code) == (403, 50001)

        hidden = client.get_channel(HIDDEN_CHANNEL)
        assert isinstance(hidden, discord.TextChannel)
        with pytest.raises(discord.Forbidden) as no_access:
            bot.call(hidden.send("psst"))
        assert no_access.value.code == 50001
        with pytest.raises(discord.NotFound) as unknown:
            bot.call(client.get_partial_messageable(42).send("anyone?"))
        assert unknown.value.code == 10003


def test_followup_after_token_expiry_fails_with_50027(emu: DiscordEmulator) -> None:
    results: Results = {}

    async def reply(interaction: discord.Interaction, prompt: str, _count: int) -> None:
        await interaction.response.defer(thinking=True)

    with ClientThread(make_bot(results, body=reply), emu.token) as bot:
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "slow"})
        assert ix.wait_response()["type"] == 5
        interaction: discord.Interaction = results["serve"][0]

        emu.advance(16 * 60)
        with pytest.raises(discord.HTTPException) as expired:
            bot.call(interaction.followup.send("finally"))
        # 401 is neither Forbidden nor NotFound in discord.py: a plain HTTPException.
        assert type(expired.value) is discord.HTTPException
        assert (expired.value.status, expired.value.code) == (401, 50027)


def test_deferred_then_followup_edits_the_thinking_message(emu: DiscordEmulator) -> None:
    async def defer_then_send(interaction: discord.Interaction, prompt: str, _count: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(f"here is {prompt}", ephemeral=False)
        await interaction.followup.send("and a second one")

    with ClientThread(make_bot({}, body=defer_then_send), emu.token):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        second = ix.wait_followups(1)[0]
        assert ix.original is not None
        # Discord: the first follow-up after a deferral replaces "thinking…", ephemeral kept.
        assert (ix.original.content, ix.original.ephemeral, ix.original.edits) == (
            "here is a",
            True,
            1,
        )
        assert (second.content, second.ephemeral) == ("and a second one", False)
        assert [r.content for r in ix.original.revisions] == ["", "here is a"]


def test_late_ack_is_unknown_interaction(emu: DiscordEmulator) -> None:
    errors: list[tuple[int, int]] = []
    release = threading.Event()

    async def slow(interaction: discord.Interaction, prompt: str, _count: int) -> None:
        await asyncio.to_thread(release.wait, 5)  # the test moves the emulator clock meanwhile
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as exc:
            errors.append((exc.status, exc.code))

    with ClientThread(make_bot({}, body=slow), emu.token):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        emu.advance(3.5)  # the bot holds its ack until now: 3.5 s late on Discord's clock
        release.set()
        wait_until(lambda: errors, timeout_s=5, what="the late ack failing")
        assert errors == [(404, 10062)]
        assert ix.response is None


def test_attachment_option_autocomplete_and_admin_subcommand(emu: DiscordEmulator) -> None:
    results: Results = {}
    with ClientThread(make_bot(results), emu.token):
        image = AttachmentSpec(filename="in.png", content_type="image/png", data=PNG)
        ix = emu.slash_command(
            GUILD, CHANNEL, USER, "serve", options={"prompt": "p"}, attachments={"image": image}
        )
        ix.wait_followups(1)
        assert results["image"] == PNG  # the bot downloaded it from the emulator

        typed = emu.autocomplete(GUILD, CHANNEL, USER, "serve", focused="prompt", value="sd")
        assert typed.wait_response() == {
            "type": 8,
            "data": {
                "choices": [{"name": "sdxl", "value": "sdxl"}, {"name": "sd15", "value": "sd15"}]
            },
        }

        admin = emu.slash_command(
            GUILD, CHANNEL, ADMIN, "admin", subcommand="pause", options={"minutes": 5}
        )
        assert admin.wait_response()["data"]["content"] == "paused"
        assert results["pause"] == (5, True)
        user = emu.slash_command(
            GUILD, CHANNEL, USER, "admin", subcommand="pause", options={"minutes": 5}
        )
        refused = user.wait_response()["data"]
        assert (refused["content"], refused["flags"]) == ("no", 64)

        with pytest.raises(LookupError):
            emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"nope": 1})
        with pytest.raises(TypeError):
            emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "x", "count": "2"})


def test_upload_over_the_guild_limit_is_413(emu: DiscordEmulator) -> None:
    client = make_bot({})
    with ClientThread(client, emu.token) as bot:
        channel = client.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        big = discord.File(io.BytesIO(b"x" * (2**20 + 1)), filename="big.png")
        with pytest.raises(discord.HTTPException) as too_big:
            bot.call(channel.send(file=big))
        assert (too_big.value.status, too_big.value.code) == (413, 40005)
        with pytest.raises(discord.HTTPException) as empty:
            bot.call(channel.send(embeds=[]))
        assert (empty.value.status, empty.value.code) == (400, 50006)


def test_gateway_reconnect_resumes_the_session(emu: DiscordEmulator) -> None:
    results: Results = {}
    with ClientThread(make_bot(results), emu.token):
        [session] = emu.wait_ready()
        assert emu.reconnect() == 1
        wait_until(lambda: session.resumes == 1 and not session.closed, timeout_s=5)
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "again"})
        ix.wait_followups(1)
        assert len(emu.sessions) == 1  # resumed, not identified anew


def test_callback_file_channel_edits_replies_and_dms(emu: DiscordEmulator) -> None:
    async def with_file(interaction: discord.Interaction, prompt: str, _count: int) -> None:
        file = discord.File(io.BytesIO(PNG), filename="now.png")
        await interaction.response.send_message(prompt, file=file)

    client = make_bot({}, body=with_file)
    with ClientThread(client, emu.token) as bot:
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "inline"})
        assert ix.wait_response()["type"] == 4
        wait_until(lambda: ix.original is not None, timeout_s=5)
        assert ix.original is not None
        assert [a.data for a in ix.original.attachments] == [PNG]

        channel = client.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        first = bot.call(
            channel.send(
                f"<@{USER}> <@{ADMIN}>",
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(ADMIN)]),
            )
        )
        assert emu.message(first.id).mentions_user_ids == [ADMIN]  # USER was not allowed
        reply = bot.call(first.reply("done", mention_author=False))
        bot.call(first.edit(content="edited"))
        bot.call(reply.delete())
        stored = emu.message(first.id)
        assert (stored.content, stored.edits, stored.mentions_user_ids) == ("edited", 1, [])
        assert emu.message(reply.id).deleted and emu.message(reply.id).message_reference
        assert [m.id for m in emu.channel_messages(CHANNEL)] == [first.id]
        assert len(emu.channel_messages(CHANNEL, include_deleted=True)) == 2

        async def dm() -> discord.Message:
            user = await client.fetch_user(USER)
            return await user.send("your image is ready")

        sent = bot.call(dm())
        assert [m.content for m in emu.channel_messages(sent.channel.id)] == ["your image is ready"]


# -- enforced nonces, history, revisions, write hooks, @original -----------------------------


async def collect(messages: AsyncIterator[discord.Message]) -> list[discord.Message]:
    return [m async for m in messages]


def text_channel(client: discord.Client, channel_id: int) -> discord.TextChannel:
    channel = client.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


def original_of(ix: Interaction, edits: int = 0) -> Message:
    """The interaction's original response, once it has had `edits` edits."""
    wait_until(
        lambda: ix.original is not None and ix.original.edits >= edits,
        timeout_s=5,
        what=f"the original response of {ix.name!r} edited {edits} times",
    )
    assert ix.original is not None
    return ix.original


def api(emu: DiscordEmulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A bot-authorized request, for what discord.py never sends."""
    headers = {"Authorization": f"Bot {emu.token}"}
    return requests.request(method, emu.api_base + path, headers=headers, timeout=5, **kwargs)


def test_enforced_nonce_returns_the_first_message_and_creates_nothing(
    emu: DiscordEmulator,
) -> None:
    client = make_bot({})
    created: list[int] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        created.append(message.id)

    writes: list[WriteEvent] = []
    emu.after_write(writes.append)
    with ClientThread(client, emu.token) as bot:
        channel = text_channel(client, CHANNEL)
        first = bot.call(channel.send("job 1 done", nonce="job-1"))
        again = bot.call(channel.send("job 1 done, retried", nonce="job-1"))
        assert (again.id, again.content) == (first.id, "job 1 done")
        other = bot.call(channel.send("job 2 done", nonce="job-2"))
        # One session gets events in order: job 2's MESSAGE_CREATE comes after any duplicate's.
        wait_until(lambda: other.id in created, timeout_s=5, what="job 2's MESSAGE_CREATE")
        assert created == [first.id, other.id]
        assert [w.kind for w in writes] == ["channel_post", "channel_post"]
        assert [(m.id, m.nonce) for m in emu.channel_messages(CHANNEL)] == [
            (first.id, "job-1"),
            (other.id, "job-2"),
        ]

        # Without enforce_nonce (discord.py always sends it) a repeat is a new message.
        path = f"/channels/{CHANNEL}/messages"
        plain = [api(emu, "POST", path, json={"content": "x", "nonce": "job-9"}) for _ in "ab"]
        assert [r.status_code for r in plain] == [200, 200]
        assert plain[0].json()["id"] != plain[1].json()["id"]

        assert emu.nonce_window_s == 120.0
        emu.advance(emu.nonce_window_s + 1)  # past the window the nonce is free again
        later = bot.call(channel.send("job 1 again", nonce="job-1"))
        assert later.id != first.id

        doomed = bot.call(channel.send("oops", nonce="job-3"))
        bot.call(doomed.delete())
        with pytest.raises(discord.NotFound) as deleted:  # as discord.py documents
            bot.call(channel.send("oops", nonce="job-3"))
        assert deleted.value.code == 10008

        with pytest.raises(discord.HTTPException) as too_long:
            bot.call(channel.send("x", nonce="n" * 26))
        assert (too_long.value.status, too_long.value.code) == (400, 50035)
        assert "In nonce: Must be 25 or fewer in length." in too_long.value.text


def test_history_pages_newest_first_across_apis(emu: DiscordEmulator) -> None:
    client = make_bot({})
    with ClientThread(client, emu.token) as bot:
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        followup = ix.wait_followups(1)[0]
        original = original_of(ix, edits=1)
        emu.click(followup, "stillhouse:again", USER).wait_response()  # ephemeral: not listed
        channel = text_channel(client, CHANNEL)
        posts = [bot.call(channel.send(f"post {n}")) for n in range(3)]
        bot.call(posts[1].delete())

        listed = bot.call(collect(channel.history(limit=None)))
        assert [m.id for m in listed] == [posts[2].id, posts[0].id, followup.id, original.id]
        reply, done, post = listed[3], listed[2], listed[0]
        assert (reply.content, reply.author.id, reply.webhook_id) == (
            "served 'a'",
            emu.bot_id,
            emu.app_id,
        )
        assert reply.interaction_metadata is not None and reply.interaction_metadata.id == ix.id
        assert [a.filename for a in done.attachments] == ["out.png"]
        assert [c.custom_id for c in done.components[0].children] == [  # type: ignore[union-attr]
            "stillhouse:again",
            "retry:7",
        ]
        assert (post.content, post.webhook_id, post.interaction_metadata) == ("post 2", None, None)

        after = bot.call(collect(channel.history(limit=2, after=original)))  # oldest first
        assert [m.id for m in after] == [followup.id, posts[0].id]
        before = bot.call(collect(channel.history(limit=1, before=posts[2])))
        assert [m.id for m in before] == [posts[0].id]
        around = bot.call(collect(channel.history(limit=3, around=followup)))
        assert [m.id for m in around] == [posts[0].id, followup.id, original.id]


def test_history_limits_paging_and_permissions(emu: DiscordEmulator) -> None:
    path = f"/channels/{OTHER_CHANNEL}/messages"
    ids = [int(api(emu, "POST", path, json={"content": f"m{n}"}).json()["id"]) for n in range(120)]
    page = api(emu, "GET", path)
    assert [int(m["id"]) for m in page.json()] == ids[::-1][:50]  # default limit 50
    assert [int(m["id"]) for m in api(emu, "GET", path, params={"after": ids[9]}).json()] == (
        ids[10:60][::-1]  # the 50 just after, newest first
    )
    for bad in ({"limit": 0}, {"limit": 101}, {"before": "x"}, {"before": 1, "after": 2}):
        answer = api(emu, "GET", path, params=bad)
        assert (answer.status_code, answer.json()["code"]) == (400, 50035), bad
    assert requests.get(emu.api_base + path, timeout=5).status_code == 401

    client = make_bot({})
    with ClientThread(client, emu.token) as bot:
        other = text_channel(client, OTHER_CHANNEL)
        gets_before = sum(r.method == "GET" and r.path.endswith(path) for r in emu.requests)
        everything = bot.call(collect(other.history(limit=None)))
        assert [m.id for m in everything] == ids[::-1]
        gets = sum(r.method == "GET" and r.path.endswith(path) for r in emu.requests)
        assert gets - gets_before == 2  # 100, then 20
        later = bot.call(collect(other.history(limit=150, after=discord.Object(ids[9]))))
        assert [m.id for m in later] == ids[10:]

        with pytest.raises(discord.Forbidden) as hidden:
            bot.call(collect(text_channel(client, HIDDEN_CHANNEL).history(limit=5)))
        assert hidden.value.code == 50001

        blind = text_channel(client, NO_HISTORY_CHANNEL)
        perms = blind.permissions_for(blind.guild.me)
        assert (perms.send_messages, perms.read_message_history) == (True, False)
        sent = bot.call(blind.send("visible, writable, but no history"))
        assert bot.call(collect(blind.history(limit=10))) == []  # Discord: "no messages"
        with pytest.raises(discord.Forbidden) as one:
            bot.call(blind.fetch_message(sent.id))
        assert one.value.code == 50013


class Nested(discord.ui.LayoutView):
    """Components v2: a button in a row in a container, and one as a section's accessory."""

    box: discord.ui.Container[Nested] = discord.ui.Container(
        discord.ui.ActionRow(discord.ui.Button(label="B", custom_id="in-row"))
    )
    section: discord.ui.Section[Nested] = discord.ui.Section(
        "text", accessory=discord.ui.Button(label="C", custom_id="accessory")
    )


def test_revisions_keep_creation_and_every_edit(emu: DiscordEmulator) -> None:
    client = make_bot({})
    with ClientThread(client, emu.token) as bot:
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        followup = ix.wait_followups(1)[0]
        original = original_of(ix)
        first, edited = original.wait_revisions(2)  # callback type 4, then PATCH @original
        assert (first.at, first.content) == (original.created_at, "queued 'a' x1")
        assert (edited.at, edited.content) == (original.edited_at, "served 'a'")
        assert followup.revisions == [
            Revision(followup.created_at, "done", ("out.png",), ("stillhouse:again", "retry:7"))
        ]

        emu.advance(10)
        emu.click(followup, "retry:7", USER).wait_response()  # callback type 7 edits it
        latest = followup.wait_revisions(2)[-1]
        assert latest == Revision(followup.edited_at or 0, "retrying job 7", ("out.png",), ())
        assert latest.at >= followup.created_at + 10

        channel = text_channel(client, CHANNEL)
        sent = bot.call(channel.send("v1"))
        png = discord.File(io.BytesIO(PNG), filename="b.png")
        bot.call(sent.edit(content=None, attachments=[png], view=Nested()))
        stored = emu.message(sent.id)
        assert [(r.content, r.attachment_names, r.component_ids) for r in stored.revisions] == [
            ("v1", (), ()),
            ("", ("b.png",), ("in-row", "accessory")),
        ]
        copy = stored.revisions
        copy.clear()  # a copy: the record keeps its own
        assert len(stored.revisions) == 2


def test_after_write_hooks_run_in_order_before_the_answer(
    emu: DiscordEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    events: list[WriteEvent] = []
    seen: list[tuple[str, str]] = []
    entered, release = threading.Event(), threading.Event()

    def broken(_event: WriteEvent) -> None:
        raise RuntimeError("a broken hook")

    def second(event: WriteEvent) -> None:
        seen.append(("second", event.kind))

    def hold(event: WriteEvent) -> None:
        if event.kind == "channel_post":  # as a chaos test would kill the bot here
            entered.set()
            release.wait(5)

    def first(event: WriteEvent) -> None:
        events.append(event)
        seen.append(("first", event.kind))

    emu.after_write(broken)
    emu.after_write(first)
    handle = emu.after_write(second)
    emu.after_write(hold)
    client = make_bot({})
    with ClientThread(client, emu.token) as bot:
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        followup = ix.wait_followups(1)[0]
        wait_until(lambda: len(events) == 3, timeout_s=5, what="callback, follow-up, edit")
        assert [(e.kind, e.interaction, e.token) for e in events] == [
            ("callback", ix, ix.token),
            ("followup", ix, ix.token),
            ("webhook_edit", ix, ix.token),
        ]
        assert [e.message for e in events] == [ix.original, followup, ix.original]
        assert not any("Authorization" in e.request_headers for e in events)

        handle.remove()
        handle.remove()  # again: nothing
        channel = text_channel(client, CHANNEL)
        pending = asyncio.run_coroutine_threadsafe(channel.send("posted"), bot.loop)
        assert entered.wait(5)
        [posted] = emu.channel_messages(CHANNEL)  # on Discord already...
        assert posted.content == "posted" and not pending.done()  # ...the bot not told yet
        release.set()
        sent = pending.result(5)
        assert sent.id == posted.id
        bot.call(sent.edit(content="edited"))

    assert [(e.kind, e.message, e.interaction, e.token) for e in events[3:]] == [
        ("channel_post", posted, None, None),
        ("channel_edit", posted, None, None),
    ]
    assert events[3].request_headers["Authorization"] == f"Bot {emu.token}"
    kinds = ("callback", "followup", "webhook_edit")
    assert seen == [
        *((who, kind) for kind in kinds for who in ("first", "second")),
        ("first", "channel_post"),
        ("first", "channel_edit"),
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "tests.doubles.discord.hooks"]
    assert [line.rsplit(" ", 1)[-1] for line in logged] == [*kinds, "channel_post", "channel_edit"]


def test_original_response_needs_an_ack_and_a_live_message(emu: DiscordEmulator) -> None:
    outcomes: list[tuple[str, int]] = []

    async def attempt(step: str, call: Any) -> None:
        try:
            await call
            outcomes.append((step, 200))
        except discord.NotFound as exc:
            outcomes.append((step, exc.code))

    async def body(interaction: discord.Interaction, _prompt: str, _count: int) -> None:
        await attempt("edit before ack", interaction.edit_original_response(content="early"))
        await attempt("follow-up before ack", interaction.followup.send("early"))
        await interaction.response.send_message("ack")
        await attempt("edit after ack", interaction.edit_original_response(content="ok"))
        await interaction.delete_original_response()
        await attempt("edit deleted", interaction.edit_original_response(content="late"))
        await attempt("get deleted", interaction.original_response())

    with ClientThread(make_bot({}, body=body), emu.token):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        wait_until(lambda: len(outcomes) == 5, timeout_s=5, what="the bot's five attempts")
        assert outcomes == [
            ("edit before ack", 10015),  # Unknown Webhook: the token works once acknowledged
            ("follow-up before ack", 10015),
            ("edit after ack", 200),
            ("edit deleted", 10008),  # Unknown Message
            ("get deleted", 10008),
        ]
        assert ix.original is not None and ix.original.deleted
        assert [r.content for r in ix.original.revisions] == ["ack", "ok"]
