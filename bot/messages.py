"""What the bot says, in one place: queued, progress, results, failures, stats."""

from __future__ import annotations

from stillhouse.queue.insights import QueueStats, Usage
from stillhouse.queue.records import QueuePosition
from stillhouse.schemas.jobs import FailurePayload, JobParams
from stillhouse.schemas.states import JobStatus

BAR_CELLS = 12
# A job sent this long without a worker taking it: a GPU is probably starting (cold).
STARTING_AFTER_S = 10.0
PROMPT_SHOWN = 180
ECHO_CHARS = 100  # the prompt as echoed by the queued message

# What an error type means for the person who asked (the worker's own text follows).
_FAILURE_REASONS = {
    "invalid_graph": "the workflow was refused by ComfyUI",
    "invalid_input": "the request could not be used",
    "node_error": "a step of the workflow failed",
    "no_output": "the workflow produced no image",
    "timeout": "it took longer than allowed",
    "interrupted": "it was interrupted",
    "lease_expired": "the GPU worker stopped responding",
    "worker_died": "the GPU worker stopped responding",
    "lost": "the GPU service lost it",
    "comfy_unavailable": "the image service was not available",
    "input_unavailable": "the input image could not be fetched",
    "upload_failed": "the images could not be stored",
}


def queued(
    public_id: str,
    position: QueuePosition,
    *,
    again: bool = False,
    reused_from: str | None = None,
    prompt: str | None = None,
) -> str:
    """The answer to an accepted /serve (or a button that queued a job), echoing the
    prompt so the channel sees what was asked."""
    echo = f" {quoted(prompt)}" if prompt else ""
    if reused_from is not None:
        return (
            f"Made before: `{public_id}`{echo} asks for exactly what `{reused_from}` made "
            "(same workflow, settings and seed), so its images come from storage, without a GPU."
        )
    verb = "Already queued" if again else "Queued"
    where = ""
    if position.ahead is not None:
        where = " - next up" if position.ahead == 0 else f" - {position.ahead} ahead of you"
    if position.estimated_wait_s is not None:
        where += f", about {duration(position.estimated_wait_s)}"
    return f"{verb} `{public_id}`{echo}{where}. You will get your images here."


def quoted(prompt: str, limit: int = ECHO_CHARS) -> str:
    """A prompt shown in a message: on one line, cut at `limit` characters, in quotes."""
    line = " ".join(prompt.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return f"“{line}”"


def progress(
    public_id: str,
    status: JobStatus,
    value: float | None,
    note: str | None,
    *,
    ahead: int | None = None,
    wait_s: float | None = None,
    sent_s: float | None = None,
    typical_s: float | None = None,
    prompt: str | None = None,
) -> str:
    """The queued message, edited while the job waits and runs and when it ends: its place
    while queued (`ahead`, `wait_s`), how long it has waited for a worker once sent
    (`sent_s`), a bar once running, with the time left if recent jobs took `typical_s`."""
    if status is JobStatus.QUEUED:
        if ahead is None:
            return f"Queued `{public_id}` - waiting for a GPU."
        # Word for word the first answer's, so an unchanged place edits nothing.
        place = QueuePosition(status=status, ahead=ahead, estimated_wait_s=wait_s)
        return queued(public_id, place, prompt=prompt)
    if status is JobStatus.DISPATCHED or (status is JobStatus.RUNNING and value is None):
        # Sent, and no worker has reported a step yet: a GPU is taking it, starting up
        # (a cold start takes tens of seconds) or busy with others.
        if sent_s is None or sent_s < STARTING_AFTER_S:
            return f"Sent `{public_id}` to a GPU - starting."
        return (
            f"Sent `{public_id}` to a GPU - waiting for one to start or come free "
            f"({duration(sent_s)} so far)."
        )
    if status is JobStatus.SUCCEEDED:
        return f"Done `{public_id}` - your images are below."
    if status is JobStatus.FAILED:
        return f"`{public_id}` could not be made - the reason is below."
    if status is JobStatus.CANCELLED:
        return f"`{public_id}` was cancelled."
    fraction = min(1.0, max(0.0, value or 0.0))
    filled = round(fraction * BAR_CELLS)
    bar = "#" * filled + "-" * (BAR_CELLS - filled)
    detail = f" {note}" if note else ""
    left = ""
    if typical_s is not None and fraction < 1:
        left = f" - about {duration(typical_s * (1 - fraction))} left"
    return f"Making `{public_id}` [{bar}] {fraction:.0%}{detail}{left}"


def result(
    public_id: str,
    title: str,
    params: JobParams,
    links: list[str],
    *,
    cancel_too_late: bool = False,
    reused_from: str | None = None,
) -> str:
    """The text above a result's images."""
    values = params.root
    prompt = str(values.get("prompt") or "").strip()
    shown = prompt if len(prompt) <= PROMPT_SHOWN else prompt[: PROMPT_SHOWN - 1] + "..."
    facts = [title]
    if "seed" in values:
        facts.append(f"seed {values['seed']}")
    lines = [f"**{shown}**" if shown else f"**{title}**", " - ".join(facts) + f" - `{public_id}`"]
    if links:
        lines.append("Too large to attach, download here: " + " ".join(f"<{u}>" for u in links))
    if cancel_too_late:
        lines.append("It finished before it could be cancelled.")
    if reused_from is not None:
        lines.append(f"The same request as `{reused_from}`: its images, sent without a GPU.")
    return "\n".join(lines)


def notice(public_id: str, text: str) -> str:
    """Any other ending (cancelled), naming the request like every answer does."""
    return f"`{public_id}`: {text}"


def failure(public_id: str, payload: FailurePayload) -> str:
    """A job that ended without images."""
    error = payload.error
    reason = _FAILURE_REASONS.get(error.type, "something went wrong")
    tries = f" after {payload.attempts} tries" if payload.attempts > 1 else ""
    detail = f": {error.message}" if error.message and not error.retryable else ""
    return f"Sorry, `{public_id}` could not be made{tries} - {reason}{detail}."


def undelivered(public_id: str) -> str:
    """A result whose images could not be fetched for delivery, however long we tried."""
    return (
        f"`{public_id}` is done, but its images could not be fetched from storage to send "
        "them here. Sorry - please ask again."
    )


def with_mention(user_id: int | None, text: str) -> str:
    """Text for the channel, where the requester must be pinged."""
    return text if user_id is None else f"<@{user_id}> {text}"


OPERATORS_ONLY = (
    "Only the bot's operators can act on every server or set quotas; leave `everywhere` "
    "off to act on this server."
)


def paused(everywhere: bool) -> str:
    """/admin pause."""
    if everywhere:
        return "Intake paused everywhere: /serve refuses new requests; queued ones still run."
    return "Intake paused in this server: /serve refuses new requests here; queued ones still run."


STILL_PAUSED_EVERYWHERE = (
    "Intake resumed in this server, but the bot's operators have paused it everywhere: "
    "/serve still refuses new requests."
)


def resumed(everywhere: bool) -> str:
    """/admin resume."""
    return "Intake resumed everywhere." if everywhere else "Intake resumed in this server."


def stats(figures: QueueStats, paused: bool, *, everywhere: bool = True) -> str:
    """/admin stats, of one server or of every server."""
    rate = figures.success_rate
    wait = figures.median_wait_s
    lines = [
        "Every server" if everywhere else "This server",
        f"Intake: {'paused' if paused else 'open'}",
        f"Queued: {figures.queued} - in flight: {figures.in_flight}",
        f"Last {duration(figures.window_s)}: {figures.succeeded} succeeded, {figures.failed} "
        f"failed, {figures.cancelled} cancelled",
        f"Success rate: {'n/a' if rate is None else f'{rate:.1%}'}"
        f" - median wait: {'n/a' if wait is None else duration(wait)}",
    ]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """A short human duration: 45 s, 3 min, 2 h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def usage(today: Usage, month: Usage, *, everywhere: bool) -> str:
    """/admin usage: GPU time of succeeded requests (ComfyUI's execution, as the worker
    timed it), today and this month (UTC), and the month's heaviest users."""
    where = "every server" if everywhere else "this server"
    lines = [
        f"GPU time in {where} (UTC): today {today.gpu_s:.1f} s for {_requests(today.jobs)}, "
        f"this month {month.gpu_s:.1f} s for {_requests(month.jobs)}."
    ]
    if month.top:
        lines.append(
            "Most this month: "
            + ", ".join(f"<@{user}> {seconds:.1f} s ({jobs})" for user, jobs, seconds in month.top)
            + "."
        )
    return "\n".join(lines)


def _requests(count: int) -> str:
    return f"{count} request" + ("" if count == 1 else "s")
