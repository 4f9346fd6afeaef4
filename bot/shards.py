"""`stillhouse shards`: how many shards Discord recommends for this bot (GET /gateway/bot),
and how to run that many: the StatefulSet in infra/k8s/bot.yaml runs one shard per pod,
taking its shard id from its ordinal, with SHARD_COUNT (infra/k8s/config.yaml) equal to
its replicas."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import discord
from discord.http import HTTPClient


@dataclass(frozen=True)
class ShardAdvice:
    """Discord's answer: its recommended shard count and today's session starts."""

    shards: int
    starts_left: int
    starts_total: int
    max_concurrency: int


async def ask_discord(token: str) -> ShardAdvice:
    """GET /gateway/bot with the bot's token."""
    http = HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(token)
        shards, _url, limits = await http.get_bot_gateway()
    finally:
        await http.close()
    return ShardAdvice(
        shards=int(shards),
        starts_left=int(limits["remaining"]),
        starts_total=int(limits["total"]),
        max_concurrency=int(limits["max_concurrency"]),
    )


def advice_text(advice: ShardAdvice, namespace: str = "stillhouse") -> str:
    """What to tell the operator."""
    n = advice.shards
    return "\n".join(
        [
            f"Discord recommends {n} shard{'s' if n != 1 else ''} for this bot.",
            f"Session starts left today: {advice.starts_left} of {advice.starts_total}; "
            f"shards that may connect at once: {advice.max_concurrency}.",
            "To run that many (one shard per pod, the pod's ordinal is its shard id):",
            f'  set SHARD_COUNT: "{n}" in infra/k8s/config.yaml and apply it, then',
            f"  kubectl -n {namespace} scale statefulset stillhouse-bot --replicas={n}",
            f"  kubectl -n {namespace} rollout restart statefulset stillhouse-bot",
            "(every shard restarts with the new count; without Kubernetes: "
            f"`stillhouse bot --shard-ids <i> --shard-count {n}` for each i below {n}).",
        ]
    )


def main(token: str) -> int:
    """Entry point: print Discord's recommendation; 1 when Discord refuses the token."""
    try:
        advice = asyncio.run(ask_discord(token))
    except discord.LoginFailure:
        print("Discord refused the bot token (STILLHOUSE_BOT__TOKEN).")
        return 1
    print(advice_text(advice))
    return 0
