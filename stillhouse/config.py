"""One settings object, read from the environment (and an optional .env) at start.

Every variable is `STILLHOUSE_<GROUP>__<FIELD>`; `make_settings()` turns pydantic's
validation errors into one line per variable so a bad deployment fails loudly at start.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stillhouse.envcheck import unknown_variables
from stillhouse.errors import SettingsError
from stillhouse.schemas.manifest import Purpose

ENV_PREFIX = "STILLHOUSE_"
NESTED_DELIMITER = "__"

_DB_SCHEMES = ("mysql+pymysql", "sqlite")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


class FieldProblem(ValueError):
    """A cross-field check that blames one named field of its group."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DatabaseSettings(BaseModel):
    """Where the two queues live."""

    url: SecretStr | None = Field(
        default=None,
        description="`mysql+pymysql://user:pass@host:3306/db` or `sqlite:///path`; "
        "default: SQLite in the data dir",
    )
    pool_size: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="connections kept per process; default: asyncio's default thread pool "
        "(CPUs + 4, at most 32) + 4, so every thread that may use one at once keeps its "
        "own instead of opening and closing one per use",
    )
    tls: Literal["auto", "off", "preferred"] = Field(
        default="auto",
        description="MySQL TLS: `preferred` (PyMySQL's default) tries it; `off` never; "
        "`auto` is off for a server on this machine (127.0.0.1, ::1, localhost), else "
        "preferred. Certificates and stricter modes go in the URL's query "
        "(`?ssl_ca=...`), which always wins",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="connect timeout (MySQL)")
    io_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="read/write timeout of one statement (MySQL): a connection gone silent "
        "fails well within a lease instead of stalling its holder",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme = value.get_secret_value().split("://", 1)[0]
        if "://" not in value.get_secret_value() or scheme not in _DB_SCHEMES:
            raise ValueError(
                f"must start with one of {', '.join(s + '://' for s in _DB_SCHEMES)} "
                f"(got {scheme!r})"
            )
        return value


class MemcachedSettings(BaseModel):
    """Locks, dedupe and rate-limit counters. Empty = in-process (one process only)."""

    servers: str = Field(
        default="", description="comma-separated `host:port` list; empty = in-process locks"
    )
    key_prefix: str = Field(default="stillhouse:", max_length=64, description="key namespace")
    connect_timeout_s: float = Field(default=0.25, gt=0, description="connect timeout")
    timeout_s: float = Field(default=0.5, gt=0, description="per-operation timeout")

    @field_validator("servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for item in _split_csv(value):
            if not _HOST_PORT.match(item):
                raise ValueError(f"expected host:port, got {item!r}")
        return value

    def server_list(self) -> list[tuple[str, int]]:
        """The servers as (host, port) pairs."""
        pairs = []
        for item in _split_csv(self.servers):
            host, port = item.rsplit(":", 1)
            pairs.append((host, int(port)))
        return pairs


class StorageSettings(BaseModel):
    """Where images go: an S3-compatible bucket or a local folder."""

    backend: Literal["local", "s3"] = Field(default="local", description="`local` or `s3`")
    local_dir: Path | None = Field(default=None, description="default: `images/` in the data dir")
    public_base_url: str = Field(
        default="http://127.0.0.1:8080/files",
        description="base of signed URLs for the local backend (served by the API)",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for local signed URLs; default: a random key kept in the folder",
    )
    url_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600, description="URL lifetime")
    s3_bucket: str | None = Field(default=None, description="bucket (required for `s3`)")
    s3_prefix: str = Field(default="stillhouse/", description="key prefix inside the bucket")
    s3_endpoint_url: str | None = Field(
        default=None, description="any S3-compatible endpoint (MinIO, R2, moto); empty = AWS"
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="endpoint in URLs handed to people, when theirs differs (compose MinIO)",
    )
    s3_region: str = Field(default="us-east-1", description="bucket region")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="empty = boto3's default credential chain"
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="secret key")

    @field_validator("s3_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a relative key prefix without '..'")
        return value if not value or value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> StorageSettings:
        if self.backend == "s3" and not self.s3_bucket:
            raise FieldProblem("s3_bucket", "required when STILLHOUSE_STORAGE__BACKEND=s3")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise FieldProblem("s3_secret_access_key", "set both S3 keys or neither")
        return self


class QueueSettings(BaseModel):
    """Attempts, leases and backoff for both queues."""

    max_attempts: int = Field(
        default=3, ge=1, le=50, description="GPU tries per generation job (backend jobs started)"
    )
    max_claims: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="claims of a job that never reached a GPU before it fails (a job that "
        "stops every dispatcher taking it); dispatcher deaths cost no attempt",
    )
    lease_s: float = Field(default=60.0, gt=0, description="generation lease before reclaim")
    backoff_base_s: float = Field(
        default=5.0, ge=0, description="retry delay after the first failure (jitter: 50-100% of it)"
    )
    backoff_max_s: float = Field(default=300.0, ge=0, description="cap on the doubling retry delay")
    partitions: int = Field(default=1, ge=1, le=1024, description="partition count P")
    delivery_max_attempts: int = Field(
        default=6,
        ge=1,
        le=50,
        description="tries per send row (written with the row by the process ending the job: "
        "set it for masters too)",
    )
    delivery_lease_s: float = Field(default=30.0, gt=0, description="send-row lease")
    estimate_window_s: int = Field(
        default=600, ge=10, description="history used for wait estimates"
    )

    @model_validator(mode="after")
    def _backoff_ordered(self) -> QueueSettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise FieldProblem("backoff_max_s", "must be at least STILLHOUSE_QUEUE__BACKOFF_BASE_S")
        return self


class WorkflowSettings(BaseModel):
    """Where workflows and the node schemas they are checked against come from."""

    dir: Path | None = Field(
        default=None,
        description="your own folder of graphs + manifests, besides the shipped ones: each "
        "adds a workflow or replaces the shipped one of its name; empty = the shipped only",
    )
    node_schemas: Path | None = Field(
        default=None,
        description="node schema snapshot (ours or a raw /object_info); empty = the shipped one",
    )
    models_file: Path | None = Field(
        default=None,
        description="TOML catalog of checkpoints and LoRAs users may choose, and who may use "
        "each (docs/workflows.md); empty = the checkpoints the workflows load, no LoRAs",
    )

    @field_validator("dir", "node_schemas", "models_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # `STILLHOUSE_WORKFLOWS__DIR=` means "none", not the current folder.
        return None if value == "" else value


class WorkerSettings(BaseModel):
    """The GPU worker: how it reaches (or starts) ComfyUI and what it lets in."""

    comfy_url: str = Field(
        default="http://127.0.0.1:8188", description="where ComfyUI listens (or will listen)"
    )
    comfy_command: str = Field(
        default="", description="command line that starts ComfyUI; empty = see DIR/WORKSPACE"
    )
    comfy_dir: Path | None = Field(
        default=None, description="a ComfyUI folder: runs `python main.py` there"
    )
    comfy_workspace: Path | None = Field(
        default=None, description="a comfy-cli workspace: runs `comfy launch`; none = attach"
    )
    comfy_python: Path | None = Field(
        default=None,
        description="the Python that runs COMFY_DIR's main.py; empty = that folder's venv/ "
        "or .venv/, else the worker's own",
    )
    comfy_base_dir: Path | None = Field(
        default=None,
        description="ComfyUI's folder holding output/, input/ and temp/, for clean-up after "
        "each job; empty = COMFY_DIR or COMFY_WORKSPACE (attached: no clean-up)",
    )
    comfy_args: str = Field(
        default="--disable-metadata", description="extra arguments for every ComfyUI we start"
    )
    comfy_probe_interval_s: float = Field(
        default=2.0, gt=0, description="while a job runs, how often ComfyUI is asked if it lives"
    )
    comfy_dead_after_s: float = Field(
        default=6.0,
        gt=0,
        description="ComfyUI gone or silent this long fails the job as retryable (and a "
        "frozen ComfyUI we started is restarted)",
    )
    startup_timeout_s: float = Field(
        default=900.0, gt=0, description="wait this long for ComfyUI while its process lives"
    )
    ws_inactivity_s: float = Field(
        default=30.0, gt=0, description="websocket silence before polling /history instead"
    )
    poll_interval_s: float = Field(default=0.5, gt=0, description="/history polling interval")
    allowed_input_hosts: str = Field(
        default="cdn.discordapp.com,media.discordapp.net",
        description="hosts input images may come from (plus the storage endpoint)",
    )
    max_input_bytes: int = Field(default=20 * 2**20, ge=1024, description="largest input image")
    max_input_pixels: int = Field(
        default=4096 * 4096, ge=64 * 64, description="largest input image in pixels"
    )
    allowed_nodes: str = Field(
        default="", description="comma-separated node types allowed; empty = the built-in list"
    )
    progress_interval_s: float = Field(default=1.0, ge=0, description="progress report interval")
    concurrency: int = Field(
        default=2,
        ge=1,
        le=8,
        description="jobs a worker holds at once: one on ComfyUI, the others waiting their "
        "turn (taken at once when the GPU frees, run while the last one uploads); 1 = "
        "never hold a job another idle worker could start",
    )
    health_host: str = Field(default="0.0.0.0", description="worker /healthz and /metrics")  # noqa: S104
    health_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="worker /healthz (503 while ComfyUI does not answer) and /metrics; 0 = none",
    )


class MasterSettings(BaseModel):
    """The dispatcher: how many jobs it holds, how often it looks, which backend."""

    backend: Literal["local", "runpod", "preview"] = Field(
        default="local",
        description="`runpod` (serverless endpoint), `local` worker processes, or `preview` "
        "(no GPU: validated graphs, placeholder images)",
    )
    max_in_flight: int = Field(default=64, ge=1, le=10_000, description="jobs one master holds")
    backend_max_in_flight: int = Field(
        default=0, ge=0, description="jobs all masters together send to the backend; 0 = no cap"
    )
    claim_batch: int = Field(default=16, ge=1, le=500, description="jobs claimed per statement")
    claim_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="idle wait between claims; a newly queued job wakes masters at once "
        "(a hint in memcached, or in the process for `stillhouse up`)",
    )
    poll_interval_s: float = Field(default=1.0, gt=0, description="backend status polling")
    progress_interval_s: float = Field(default=2.0, ge=0, description="job progress writes")
    job_timeout_s: float = Field(default=600.0, gt=0, description="time limit sent to workers")
    backend_queue_s: float = Field(
        default=900.0,
        gt=0,
        description="allowance for the backend's queue and cold starts: a job with no "
        "outcome `job_timeout_s` + this after its claim is cancelled there and retried",
    )
    backend_call_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="limit on one backend call (submit, status, cancel); then retried",
    )
    drain_grace_s: float = Field(
        default=30.0, ge=0, description="on SIGTERM, wait this long before handing jobs back"
    )
    reap_interval_s: float = Field(default=5.0, gt=0, description="expired-lease sweeps")
    cancel_check_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="how often a master looks for users' cancels of the jobs it holds",
    )
    http_host: str = Field(default="0.0.0.0", description="/metrics and webhook listener")  # noqa: S104
    http_port: int = Field(default=9464, ge=0, le=65535, description="0 = no HTTP listener")
    partitions: str = Field(default="", description="comma-separated partitions; empty = all")
    local_workers: int = Field(
        default=1,
        ge=0,
        le=64,
        description="worker processes the local backend starts; 0 = only workers that "
        "already run and poll its control plane (compose's GPU service)",
    )
    local_plane_host: str = Field(
        default="127.0.0.1", description="where the local backend's control plane listens"
    )
    local_plane_port: int = Field(
        default=8300,
        ge=0,
        le=65535,
        description="its port (workers take jobs at http://HOST:PORT/job-take/…); 0 = any",
    )

    @field_validator("partitions")
    @classmethod
    def _numbers(cls, value: str) -> str:
        for item in _split_csv(value):
            if not item.isdigit():
                raise ValueError(f"expected comma-separated partition numbers, got {item!r}")
        return value

    def partition_list(self) -> list[int] | None:
        """The partitions to claim from, or None for all."""
        items = [int(i) for i in _split_csv(self.partitions)]
        return items or None

    def deadline_s(self) -> float:
        """How long one holder follows a job before giving up on the backend."""
        return self.job_timeout_s + self.backend_queue_s


class RunPodSettings(BaseModel):
    """The RunPod serverless endpoint the `runpod` backend drives."""

    endpoint_id: str = Field(default="", description="endpoint id (required for `runpod`)")
    api_key: SecretStr | None = Field(default=None, description="RunPod API key")
    base_url: str = Field(
        default="https://api.runpod.ai/v2", description="API base (a test double in tests)"
    )
    rest_url: str = Field(
        default="https://rest.runpod.io/v1",
        description="REST API base, for `stillhouse scale workers` (a test double in tests)",
    )
    webhook_url: str = Field(
        default="", description="public URL of this master's /webhooks/runpod; empty = poll"
    )
    webhook_token: SecretStr | None = Field(
        default=None, description="shared secret RunPod's webhook calls must carry"
    )
    lost_after_polls: int = Field(
        default=3, ge=1, description="`not found` answers in a row before a job counts lost"
    )


class IntakeSettings(BaseModel):
    """What every front (bot, API) accepts: limits, the content filter, defaults."""

    default_workflow: str = Field(default="sd15-txt2img", description="when none is named")
    per_minute: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="requests a user may queue in any 60 s (the one tier's, without TIERS_FILE)",
    )
    max_active_jobs: int = Field(default=3, ge=1, le=1000, description="queued+running per user")
    daily_quota: int = Field(
        default=0,
        ge=0,
        description="requests per user per 24 h; 0 = none (the one tier's, without TIERS_FILE; "
        "per user: /admin quota)",
    )
    filter_words: str = Field(default="", description="comma-separated words prompts may not use")
    filter_file: Path | None = Field(
        default=None, description="TOML with words, patterns and per-guild overrides"
    )
    tiers_file: Path | None = Field(
        default=None,
        description="TOML of tiers (quotas per minute to month, head start); none: one tier "
        "from PER_MINUTE and DAILY_QUOTA",
    )
    max_attachment_bytes: int = Field(
        default=10 * 2**20, ge=1024, description="largest image a user may attach"
    )
    reuse_results_s: int = Field(
        default=7 * 86_400,
        ge=0,
        description="a request identical to a success this recent (same workflow, graph, "
        "fixed seed, stored inputs) gets its images without a GPU; 0 = never",
    )

    def word_list(self) -> list[str]:
        """Words the filter refuses (besides the filter file's)."""
        return _split_csv(self.filter_words)


# Refused in prompts outside age-restricted channels (Discord's rule: adult content only
# in channels marked age-restricted). Whole words, any case; operators may replace it.
DEFAULT_NSFW_WORDS = (
    "nsfw,nude,nudes,naked,nudity,porn,porno,pornographic,sex,sexual,explicit,hentai,"
    "erotic,xxx,topless,nipples,genitals,lingerie"
)


class SafetySettings(BaseModel):
    """Image safety by Discord's rules: which prompts need an age-restricted channel, and
    the check of generated images (an HTTP service; off when no URL is set)."""

    nsfw_words: str = Field(
        default=DEFAULT_NSFW_WORDS,
        description="comma-separated words a prompt may use only in age-restricted channels",
    )
    image_check_url: str = Field(
        default="",
        description='POST each image there, get {"score": 0..1} back; empty = images unchecked',
    )
    image_check_threshold: float = Field(
        default=0.8, ge=0, le=1, description="a score at or above this flags the image"
    )
    image_check_timeout_s: float = Field(
        default=5.0, gt=0, description="an answer later than this counts as unavailable"
    )

    def nsfw_list(self) -> list[str]:
        """The words that need an age-restricted channel."""
        return _split_csv(self.nsfw_words)


DEFAULT_PROMPT_HELP_SYSTEM = (
    "You rewrite prompts for Stable Diffusion image models. Keep the subject and every "
    "detail the user gave; add concrete detail on style, medium, lighting, colour and "
    "composition. Answer with the rewritten prompt only, on one line, under 60 words: no "
    "quotes, no labels, no explanations."
)


class PromptHelpSettings(BaseModel):
    """Prompt help (/describe, enhanced prompts) from an OpenAI-compatible chat API, such as
    vLLM's; off when no URL is set."""

    url: str = Field(
        default="",
        description="base URL of an OpenAI-compatible API (`http://vllm:8000/v1`); "
        "POST {url}/chat/completions; empty = prompt help off",
    )
    model: str = Field(
        default="meta-llama/Llama-3.1-8B-Instruct",
        min_length=1,
        description="model name sent with each request (vLLM: its --served-model-name)",
    )
    api_key: SecretStr | None = Field(
        default=None, description="sent as `Authorization: Bearer`; empty = none"
    )
    timeout_s: float = Field(
        default=6.0,
        gt=0,
        le=60,
        description="whole-call limit (at most 60 s): past it the prompt is used as written; "
        "the user waits this long on a deferred answer",
    )
    max_prompt_chars: int = Field(
        default=1000, ge=50, le=6000, description="longest prompt taken from the model"
    )
    vision: bool = Field(
        default=False,
        description="the model reads images (a vision model): /describe works",
    )
    system_prompt: str = Field(
        default=DEFAULT_PROMPT_HELP_SYSTEM,
        min_length=1,
        description="instructions for rewriting a prompt",
    )

    @field_validator("url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) base URL such as http://vllm:8000/v1")
        return value


class BotSettings(BaseModel):
    """The Discord front: token, commands, delivery."""

    token: SecretStr | None = Field(default=None, description="Discord bot token")
    sync_guild_ids: str = Field(
        default="", description="comma-separated guilds to sync commands to; empty = global"
    )
    admin_ids: str = Field(
        default="",
        description=(
            "comma-separated user ids of the bot's operators: /admin in any server, "
            "`everywhere`, quotas"
        ),
    )
    upscale_workflow: str = Field(
        default="upscale-2x", description="the Upscale (2x) button's, for every family"
    )
    variations_workflow: str = Field(
        default="sd15-variations",
        description="the Variations button's for results of its family (others: their "
        "family's own)",
    )
    delivery_batch: int = Field(default=10, ge=1, le=100, description="send rows claimed at once")
    delivery_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="idle wait between claims; a job's outcome wakes the bots at once "
        "(a hint in memcached, or in the process for `stillhouse up`)",
    )
    recent_images_mb: int = Field(
        default=64,
        ge=0,
        description="images each bot process keeps in memory after delivering them: a "
        "repeated request's answer is not read from storage again; 0 = none",
    )
    progress_interval_s: float = Field(
        default=3.0, gt=0, description="how often a running job's message is edited"
    )
    global_rate_per_s: int = Field(
        default=45, ge=1, le=50, description="bot-token requests a second, all processes together"
    )
    token_lifetime_s: float = Field(
        default=14 * 60.0,
        gt=0,
        le=15 * 60,
        description="use an interaction's token this long, then post in the channel",
    )
    metrics_host: str = Field(default="0.0.0.0", description="/metrics listener")  # noqa: S104
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="bot /metrics port; 0 = none (one per process)"
    )

    @field_validator("sync_guild_ids", "admin_ids")
    @classmethod
    def _ids(cls, value: str) -> str:
        for item in _split_csv(value):
            if not item.isdigit():
                raise ValueError(f"expected comma-separated Discord ids, got {item!r}")
        return value

    def guild_list(self) -> list[int]:
        """Guilds to sync commands to (empty: sync globally)."""
        return [int(i) for i in _split_csv(self.sync_guild_ids)]

    def admin_list(self) -> set[int]:
        """Users who may use /admin in every guild."""
        return {int(i) for i in _split_csv(self.admin_ids)}

    def preferred_workflows(self) -> dict[Purpose, str]:
        """The buttons' workflows the operators chose (stillhouse.followups)."""
        return {
            Purpose.UPSCALE: self.upscale_workflow,
            Purpose.VARIATIONS: self.variations_workflow,
        }


class ApiSettings(BaseModel):
    """The HTTP API and its playground."""

    host: str = Field(default="127.0.0.1", description="listen address")
    port: int = Field(default=8080, ge=0, le=65535, description="listen port")
    keys: SecretStr | None = Field(
        default=None,
        description="comma-separated `name:key` pairs; empty = no key needed (local use)",
    )
    events_interval_s: float = Field(
        default=0.5, gt=0, description="how often an event stream looks at its job"
    )
    max_body_bytes: int = Field(
        default=64 * 2**10,
        ge=1024,
        description="largest request body read (413 past it); POST /v1/uploads has its own",
    )
    max_upload_bytes: int = Field(
        default=10 * 2**20, ge=1024, description="largest image POST /v1/uploads takes"
    )
    max_wait_s: float = Field(
        default=300.0,
        ge=0,
        le=300,
        description="longest POST /v1/images waits for its image (less behind a proxy "
        "with a shorter read timeout)",
    )
    public_url: str = Field(
        default="",
        description="the web app's address as people reach it, for links the bot hands "
        "out (Vary Region); empty = http://HOST:PORT",
    )
    edit_link_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of Vary Region's links to the mask editor (at least 32 "
        "characters, the same for the bot and the API); empty = Vary Region is off",
    )
    edit_link_lifetime_s: int = Field(
        default=900, ge=60, le=7 * 86_400, description="how long a Vary Region link works"
    )

    @field_validator("edit_link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # `STILLHOUSE_API__EDIT_LINK_SECRET=` means off
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (or empty: Vary Region off)")
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("expected an http:// or https:// address, e.g. https://sh.example")
        return value.rstrip("/")

    def base_url(self) -> str:
        """Where people reach the web app: PUBLIC_URL, else the listen address."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @field_validator("keys")
    @classmethod
    def _pairs(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for item in _split_csv(value.get_secret_value()):
            name, _, key = item.partition(":")
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", name) or len(key) < 16:
                raise ValueError(
                    "expected `name:key` pairs, names of letters, digits, '.', '_' or '-' and "
                    "keys of at least 16 characters"
                )
        return value

    def key_names(self) -> dict[str, str]:
        """key -> the name it stands for."""
        if self.keys is None:
            return {}
        pairs = (item.partition(":") for item in _split_csv(self.keys.get_secret_value()))
        return {key: name for name, _, key in pairs}


class LogSettings(BaseModel):
    """Structured logs on stderr."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log level"
    )
    format: Literal["json", "text"] = Field(default="json", description="`json` lines or `text`")


class Settings(BaseSettings):
    """Everything a stillhouse process can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(
        default=Path(".stillhouse"), description="embedded defaults live here (SQLite, images)"
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    memcached: MemcachedSettings = Field(default_factory=MemcachedSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    workflows: WorkflowSettings = Field(default_factory=WorkflowSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    master: MasterSettings = Field(default_factory=MasterSettings)
    runpod: RunPodSettings = Field(default_factory=RunPodSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    prompt_help: PromptHelpSettings = Field(default_factory=PromptHelpSettings)
    bot: BotSettings = Field(default_factory=BotSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _backend_configured(self) -> Settings:
        if self.master.backend == "runpod" and not self.runpod.endpoint_id:
            raise FieldProblem(
                "runpod.endpoint_id", "required when STILLHOUSE_MASTER__BACKEND=runpod"
            )
        if self.master.backend == "runpod" and self.runpod.api_key is None:
            raise FieldProblem("runpod.api_key", "required when STILLHOUSE_MASTER__BACKEND=runpod")
        return self

    def database_url(self) -> str:
        """The database URL, with the embedded SQLite default filled in."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'queue.sqlite3'}"

    def images_dir(self) -> Path:
        """The local storage folder, with its default filled in."""
        return self.storage.local_dir or self.data_dir / "images"

    def secret_values(self) -> list[str]:
        """Every configured secret, for log redaction."""
        secrets = [_password_of(self.database_url())]
        for group in (self.storage, self.runpod, self.bot, self.api, self.prompt_help):
            for value in group.__dict__.values():
                if isinstance(value, SecretStr):
                    secrets.append(value.get_secret_value())
        # Each API key on its own: the joined `name:key` list is not what a leak shows.
        secrets.extend(self.api.key_names())
        return [s for s in secrets if s]


def make_settings(**overrides: Any) -> Settings:
    """Build the settings or raise SettingsError with one line per bad variable: a value
    that does not validate, or a STILLHOUSE_ name that is no setting (in the environment
    or in `.env`)."""
    mistyped = unknown_variables(_given_variables(), setting_names(), ENV_PREFIX)
    if mistyped:
        raise SettingsError(mistyped)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(list(_describe(exc))) from None


def setting_names() -> set[str]:
    """Every variable a setting is read from: each field, each group as a whole (JSON)."""
    names = {row[0] for row in settings_table()}
    names.update(env_name(name) for name in Settings.model_fields)
    return names


def _given_variables() -> dict[str, str]:
    """The environment, and `.env` where the settings read it from."""
    from dotenv import dotenv_values

    given = dict(os.environ)
    env_file = Path(str(Settings.model_config.get("env_file") or ".env"))
    if env_file.is_file():
        given.update({k: v or "" for k, v in dotenv_values(env_file).items()})
    return given


def safe_database_url(url: str) -> str:
    """The URL with its password replaced, for logs and `db current`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def env_name(*path: str) -> str:
    """The environment variable for a settings path, e.g. ('queue', 'lease_s')."""
    return ENV_PREFIX + NESTED_DELIMITER.join(p.upper() for p in path)


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, in declaration order."""
    rows: list[tuple[str, str, str]] = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub_name, sub_field in annotation.model_fields.items():
                rows.append(
                    (env_name(name, sub_name), _show_default(sub_field.default), _doc(sub_field))
                )
        else:
            rows.append((env_name(name), _show_default(field.default), _doc(field)))
    return rows


def _is_secret(loc: list[str]) -> bool:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return "SecretStr" in str(annotation)
    return False


def _doc(field: Any) -> str:
    return str(field.description or "")


def _show_default(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    return str(value)


def _password_of(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def _split_csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _describe(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc.extend(cause.field.split("."))
            message = str(cause)
        else:
            message = error["msg"].removeprefix("Value error, ")
        shown = error.get("input")
        hidden = _is_secret(loc) or isinstance(shown, dict)
        detail = "" if hidden else f" (got {shown!r})"
        yield f"{env_name(*loc)}: {message}{detail}"
