"""What the Discord emulator remembers: guilds, messages, interactions, sessions, faults.

Everything here is mutated on the emulator's loop thread under `State.lock` and read from
the test thread; list-valued attributes are handed out as copies so a reader never sees a
list change under it.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from tests.doubles.discord.hooks import WriteHook

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
BASIC_PERMISSIONS = (
    (1 << 0)  # create instant invite
    | (1 << 6)  # add reactions
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | (1 << 14)  # embed links
    | (1 << 15)  # attach files
    | READ_MESSAGE_HISTORY
    | (1 << 18)  # use external emojis
    | (1 << 26)  # change nickname
    | (1 << 31)  # use application commands
    | (1 << 38)  # send messages in threads
)
ALL_PERMISSIONS = (1 << 51) - 1

DEFAULT_OWNER_ID = 1_000_000_000_000_000_001
EPHEMERAL = 1 << 6
LOADING = 1 << 7  # a deferred ("thinking") response


class Snowflakes:
    """Discord-shaped ids from a clock: the time in the top bits, a counter below, unique."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        now = self._clock.now() if self._clock else time.time()
        with self._lock:
            self._last = max(((int(now * 1000) - DISCORD_EPOCH_MS) << 22), self._last + 1)
            return self._last


_SPEC_IDS = Snowflakes()


class Clock:
    """Wall time plus a test-controlled offset (`DiscordEmulator.advance`)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@dataclass
class GuildSpec:
    """A guild the bot is in. Ids default to fresh snowflakes."""

    id: int = field(default_factory=_SPEC_IDS.next)
    name: str = "Stillhouse Test Guild"
    channel_ids: list[int] = field(default_factory=lambda: [_SPEC_IDS.next()])
    owner_id: int = DEFAULT_OWNER_ID
    member_ids: list[int] = field(default_factory=list)
    upload_limit: int = 10 * 2**20
    no_access_channel_ids: list[int] = field(default_factory=list)
    admin_ids: set[int] = field(default_factory=set)
    # Visible and writable, but the bot lacks Read Message History there.
    no_history_channel_ids: list[int] = field(default_factory=list)
    # Age-restricted ("NSFW") channels: Discord's `nsfw` flag is set on them.
    nsfw_channel_ids: list[int] = field(default_factory=list)
    # More roles (id -> the members who have it), named "role-<id>", no permissions.
    role_members: dict[int, set[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class AttachmentSpec:
    """A file a user attaches to a slash command option."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass
class Attachment:
    """A stored file, served by the emulator at `url`."""

    id: int
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Revision:
    """A message as one create or edit left it (`at`: emulator clock)."""

    at: float
    content: str
    attachment_names: tuple[str, ...]
    component_ids: tuple[str, ...]  # every custom_id, nested rows included


@dataclass(eq=False)
class Message:
    """A message as Discord stores it; `via` says which API created it."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    via: str  # "callback" | "followup" | "channel"
    created_at: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    mentions_user_ids: list[int] = field(default_factory=list)
    message_reference: dict[str, Any] | None = None
    interaction_id: int | None = None
    webhook_id: int | None = None
    type: int = 0
    tts: bool = False
    nonce: str | int | None = None
    edited_at: float | None = None
    edits: int = 0
    deleted: bool = False
    _revisions: list[Revision] = field(default_factory=list, repr=False)
    _cond: threading.Condition | None = field(default=None, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def revisions(self) -> list[Revision]:
        """Its creation, then one per edit, oldest first (a copy)."""
        if self._cond is None:
            return list(self._revisions)
        with self._cond:
            return list(self._revisions)

    def wait_revisions(self, n: int, timeout_s: float = 5.0) -> list[Revision]:
        """The first `n` (or more) revisions; fails at the deadline."""
        assert self._cond is not None, "a message made outside the emulator"
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._revisions) >= n, timeout_s):
                got = len(self._revisions)
                raise AssertionError(f"{got} of {n} revisions of {self.id} in {timeout_s}s")
            return list(self._revisions)


@dataclass(eq=False)
class Interaction:
    """One injected interaction and everything the bot did with it."""

    id: int
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete
    guild_id: int | None
    channel_id: int
    user_id: int
    created_at: float
    name: str  # command name, or the custom_id of a component
    payload: dict[str, Any] = field(repr=False)
    cond: threading.Condition = field(repr=False)
    message_id: int | None = None  # the message a component is on
    response: dict[str, Any] | None = None
    responded_at: float | None = None  # when the callback landed (emulator clock)
    original: Message | None = None
    _followups: list[Message] = field(default_factory=list, repr=False)
    _delivered_to: list[tuple[int, int]] = field(default_factory=list, repr=False)

    @property
    def followups(self) -> list[Message]:
        with self.cond:
            return list(self._followups)

    @property
    def delivered_to(self) -> list[tuple[int, int]]:
        with self.cond:
            return list(self._delivered_to)

    def wait_response(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The callback the bot sent; fails at the deadline."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.response is not None, timeout_s):
                raise AssertionError(f"no callback for interaction {self.name!r} in {timeout_s}s")
            assert self.response is not None
            return self.response

    def wait_followups(self, n: int, timeout_s: float = 5.0) -> list[Message]:
        """The first `n` (or more) follow-ups; fails at the deadline."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self._followups) >= n, timeout_s):
                got = len(self._followups)
                raise AssertionError(f"{got} of {n} follow-ups for {self.name!r} in {timeout_s}s")
            return list(self._followups)


@dataclass(eq=False)
class Session:
    """A gateway session (it outlives a connection when resumed)."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    identified_at: float
    closed: bool = False
    resumable: bool = True
    resumes: int = 0
    seq: int = 0
    close_code: int | None = None
    guilds_sent: bool = False
    # The events since the last connection, replayed on RESUME.
    sent: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def handles(self, guild_id: int | None) -> bool:
        """Whether Discord routes this guild's events here (DMs go to shard 0)."""
        if guild_id is None:
            return self.shard_id == 0
        return (guild_id >> 22) % self.shard_count == self.shard_id


class RequestRecord(NamedTuple):
    at: float  # time.monotonic()
    method: str
    path: str
    bot_authorized: bool
    status: int


@dataclass
class Fault:
    """An error answered instead of the next matching request(s); with `delay_s`, the
    request is held that long and then handled as usual (a slow network or Discord)."""

    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float | None
    code: int | None
    message: str | None
    hits: int = 0
    delay_s: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        verb = self.method.upper()
        return self.remaining > 0 and verb in ("*", method) and bool(self.pattern.search(path))


@dataclass
class Channel:
    """A guild text channel or a DM."""

    id: int
    guild_id: int | None
    name: str
    position: int
    accessible: bool = True
    recipient_id: int | None = None  # DMs
    history_readable: bool = True  # Read Message History
    nsfw: bool = False  # age-restricted

    @property
    def type(self) -> int:
        return 0 if self.guild_id is not None else 1


@dataclass
class Guild:
    """A GuildSpec with what the emulator derives from it (roles, join time)."""

    spec: GuildSpec
    bot_role_id: int
    admin_role_id: int
    joined_at: float

    @property
    def id(self) -> int:
        return self.spec.id

    def member_ids(self, bot_id: int) -> list[int]:
        ids = [bot_id, self.spec.owner_id, *self.spec.member_ids, *sorted(self.spec.admin_ids)]
        return list(dict.fromkeys(ids))

    def permissions(self, user_id: int) -> int:
        if user_id == self.spec.owner_id:
            return ALL_PERMISSIONS
        if user_id in self.spec.admin_ids:
            return BASIC_PERMISSIONS | MANAGE_GUILD
        return BASIC_PERMISSIONS


class State:
    """All records, under one lock; `cond` wakes threads waiting on a record."""

    def __init__(self, app_id: int, bot_id: int, token: str) -> None:
        self.app_id, self.bot_id, self.token = app_id, bot_id, token
        self.base_url = ""  # set once the server listens
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.clock = Clock()
        self.ids = Snowflakes(self.clock)
        self.tokens = (f"emu-interaction-{n:08d}" for n in itertools.count(1))
        self.guilds: dict[int, Guild] = {}
        self.recommended_shards: int | None = None  # GET /gateway/bot's `shards`, if set
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.attachments: dict[int, Attachment] = {}
        self.interactions: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.sessions: list[Session] = []
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        # Create Message with enforce_nonce: how long a nonce stays taken (emulator clock).
        self.nonce_window_s = 120.0
        self.nonces: dict[tuple[int, int, str], Message] = {}  # (channel, author, nonce): newest
        self.write_hooks: list[WriteHook] = []  # DiscordEmulator.after_write

    def add_guild(self, spec: GuildSpec) -> None:
        self.guilds[spec.id] = Guild(spec, self.ids.next(), self.ids.next(), self.clock.now())
        names = [
            *spec.channel_ids,
            *spec.no_history_channel_ids,
            *spec.no_access_channel_ids,
            *spec.nsfw_channel_ids,
        ]
        for position, channel_id in enumerate(dict.fromkeys(names)):
            accessible = channel_id not in spec.no_access_channel_ids
            name = f"channel-{position}"
            ch = Channel(channel_id, spec.id, name, position, accessible)
            ch.history_readable = channel_id not in spec.no_history_channel_ids
            ch.nsfw = channel_id in spec.nsfw_channel_ids
            self.channels[channel_id] = ch

    def dm_channel(self, user_id: int, channel_id: int | None = None) -> Channel:
        """The (one) DM channel with a user, made on first use."""
        for channel in self.channels.values():
            if channel.recipient_id == user_id:
                return channel
        channel = Channel(channel_id or self.ids.next(), None, "", 0, recipient_id=user_id)
        self.channels[channel.id] = channel
        return channel

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()
