"""A local Discord (HTTP API + gateway) that the real discord.py runs against in tests.

    with DiscordEmulator(guilds=[GuildSpec(...)]) as emu, emu.patched():
        with ClientThread(client, emu.token):
            ix = emu.slash_command(guild_id, channel_id, user_id, "serve", options={...})
            ix.wait_response()

See `server.DiscordEmulator` for the whole interface. Behaviours a bot must cope with:

- `slash_command` checks the synced commands (`tree.sync()`, or `emu.register_commands`):
  an unknown command or option, or a wrong option type, raises in the test.
- A callback more than 3 s (emulator clock) after the interaction: 404 10062; a second
  callback: 400 40060. `emu.interaction_lag_s` delivers interactions that much late
  (a lagging gateway or bot); the 3 s still count from the interaction's making.
  Follow-ups before any callback: 404 10015; after 15 min: 401 50027 (discord.py raises
  a plain `HTTPException` for 401).
- The first follow-up after a deferral (callback type 5) edits the "thinking" message
  instead of creating one (Discord's documented rule), keeping its ephemerality.
- Several discord.py clients in one process must share one `ClientThread` (one loop).
- Create Message with `nonce` + `enforce_nonce` (discord.py always sends both) returns the
  earlier message for a nonce repeated within `emu.nonce_window_s` (emulator clock).
- `GET /channels/{id}/messages` pages a channel's history newest first; without Read
  Message History (`GuildSpec.no_history_channel_ids`) it answers no messages.
- Age-restricted channels (`GuildSpec.nsfw_channel_ids`) carry Discord's `nsfw` flag in
  GUILD_CREATE and in each interaction's `channel`.
- Every message keeps `revisions` (creation, then each edit); `emu.after_write(hook)` runs
  test code once a write has landed, before the bot hears back (chaos tests).
"""

from tests.doubles.discord.hooks import WriteEvent, WriteHook
from tests.doubles.discord.runner import ClientThread
from tests.doubles.discord.server import DiscordEmulator
from tests.doubles.discord.state import (
    Attachment,
    AttachmentSpec,
    GuildSpec,
    Interaction,
    Message,
    RequestRecord,
    Revision,
    Session,
)

__all__ = [
    "Attachment",
    "AttachmentSpec",
    "ClientThread",
    "DiscordEmulator",
    "GuildSpec",
    "Interaction",
    "Message",
    "RequestRecord",
    "Revision",
    "Session",
    "WriteEvent",
    "WriteHook",
]
