"""Discord front: sharded discord.py bot, /serve, buttons, delivery from the send queue."""
