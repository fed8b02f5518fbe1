"""The one settings class: read once from the environment (prefix ``PARLEY_``), passed down.

Every URL left empty means "local": ``parley up`` starts that server itself under the data
dir and fills the URL in for the processes it spawns. A URL that is set names an external
server, and nothing local is started for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "minioadmin"})
MIB = 1024 * 1024


# The worker's Faust tables (commands/handler.py's stores); each has a compacted changelog topic.
WORKER_TABLES = ("aggregates", "messages", "outcomes")


class RateLimit(BaseModel):
    """At most ``limit`` calls in any ``period_s`` (GCRA: a burst of ``limit``, then one call
    every ``period_s / limit`` seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1)
    period_s: float = Field(gt=0)


class RateLimits(BaseModel):
    """One limit per operation class (docs/PROTOCOL.md, "Rate limits"). Set some or all of them
    with one JSON object, e.g. ``PARLEY_RATE_LIMITS='{"login_username": {"limit": 3, "period_s": 60}}'``;
    the classes not named keep these defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    # Socket events, per user.
    command: RateLimit = RateLimit(limit=600, period_s=60)  # conversation:*, message:* commands
    query: RateLimit = RateLimit(limit=1200, period_s=60)  # conversation:list, message:history, unknown events
    search: RateLimit = RateLimit(limit=60, period_s=60)  # search:*
    media: RateLimit = RateLimit(limit=60, period_s=60)  # media:*
    keys: RateLimit = RateLimit(limit=60, period_s=60)  # keys:*
    typing: RateLimit = RateLimit(limit=120, period_s=60)
    # HTTP auth endpoints, per client address (login also per username).
    login_address: RateLimit = RateLimit(limit=60, period_s=60)
    login_username: RateLimit = RateLimit(limit=10, period_s=900)
    register_address: RateLimit = RateLimit(limit=20, period_s=3600)
    refresh_address: RateLimit = RateLimit(limit=60, period_s=60)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    environment: Literal["local", "production"] = "local"
    data_dir: Path = Path(".parley")
    host: str = "127.0.0.1"
    port: int = 8000
    instance_id: str = ""  # gateway / worker identity; generated when empty
    # Several gateway processes on one port (SO_REUSEPORT: the kernel spreads new connections
    # over them). `parley up --gateways N` sets it when N > 1; see docs/OPERATIONS.md.
    gateway_reuse_port: bool = False

    # External servers (empty: started locally by `parley up`).
    kafka_bootstrap: str = ""  # host:port[,host:port]
    mongo_url: str = ""
    mongo_db: str = "parley"
    redis_url: str = ""
    elasticsearch_url: str = ""
    s3_endpoint: str = ""  # host:port
    s3_access_key: str = "parley-local"
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    media_bucket: str = "parley-media"
    # Where clients reach the S3 server, when not at s3_endpoint (behind a proxy, another host
    # name): presigned URLs are signed for this host. Empty: s3_endpoint.
    s3_public_endpoint: str = ""
    s3_public_secure: bool | None = None  # None: as s3_secure

    # Media (media:*): what may be uploaded, and how long URLs and unfinished uploads live.
    media_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    media_content_types: tuple[str, ...] = (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "video/mp4",
        "audio/mpeg",
        "audio/ogg",
        "application/pdf",
        "text/plain",
        "application/octet-stream",
    )
    media_upload_ttl_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)  # presigned PUT, and the upload's expiry
    media_download_ttl_s: int = Field(default=300, ge=1, le=7 * 24 * 3600)  # presigned GET
    media_sweep_interval_s: float = Field(default=30.0, gt=0)  # the worker removes expired and deleted objects
    media_authz_allowed_ttl_s: int = Field(default=300, ge=1)  # cached download decisions (as the seed)
    media_authz_denied_ttl_s: int = Field(default=60, ge=1)

    # Kafka layout: commands and events are partitioned by aggregate (stream) id.
    topic_prefix: str = "parley"
    partitions: int = Field(default=4, ge=1, le=256)
    replication_factor: int = Field(default=1, ge=1, le=5)
    kafka_session_timeout_s: float = 10.0
    kafka_heartbeat_s: float = 2.0
    # How long the broker may hold a worker's fetch for partitions with nothing new (see
    # streams/idempotent.py): the bound on how long a command can wait behind an idle fetch.
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=1, le=10_000)
    # The local broker's JVM heap (`parley up` only; production sizes its brokers itself).
    local_kafka_heap_mb: int = Field(default=512, ge=128, le=8192)

    # Worker
    worker_id: str = "parley-worker"  # the Faust app id, i.e. the consumer group
    table_store: str = "rocksdb://"  # "memory://" keeps worker tables in RAM only
    # Where this worker process keeps its table state (one directory per process; empty:
    # DATA_DIR/worker/WORKER_ID). `parley up --workers M` gives each of its workers its own.
    worker_state_dir: Path | None = None
    # Where the worker serves its Prometheus metrics (GET /metrics on ``host``); 0 serves none.
    # `parley up` picks a free port when this is not set, and prints it.
    worker_metrics_port: int = Field(default=9400, ge=0, le=65535)

    # Security
    jwt_secret: str = ""  # local mode: generated once and kept in the data dir
    # Crypto-shredding (docs/THREAT-MODEL.md): wraps every user's data key and keys the username
    # streams' hashes. urlsafe base64 of 32 bytes; local mode: generated once, kept in the data dir.
    master_key: str = ""
    key_store_db: str = ""  # the key store's MongoDB database (empty: "<mongo_db>_keys")
    # How long the commands topic keeps commands (they hold personal data in clear): 24 h.
    commands_retention_ms: int = Field(default=24 * 3600 * 1000, ge=60_000)
    jwt_algorithm: str = "HS256"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600

    # Gateway behaviour
    command_timeout_s: float = 10.0
    query_timeout_s: float = 5.0
    cors_origins: list[str] = Field(default_factory=list)
    # The largest Socket.IO / Engine.IO frame accepted; a larger one closes the connection (it is
    # never read, so it cannot be acked). Sized for bodies of 10,000 characters (up to ~120 KB as
    # JSON-escaped emoji) and 64 KiB ciphertexts (~88 KB of base64) with room to spare.
    socket_max_frame_bytes: int = Field(default=MIB, ge=64 * 1024, le=64 * MIB)
    rate_limits: RateLimits = Field(default_factory=RateLimits)

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _reject_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            for name in ("jwt_secret", "s3_secret_key"):
                if getattr(self, name) in PLACEHOLDER_SECRETS or len(getattr(self, name)) < 16:
                    raise ValueError(f"PARLEY_{name.upper()} must be a real secret (>= 16 chars) in production")
            if not self.master_key:
                raise ValueError("PARLEY_MASTER_KEY must be set in production (urlsafe base64 of 32 bytes)")
            for name in ("kafka_bootstrap", "mongo_url", "redis_url", "elasticsearch_url", "s3_endpoint"):
                if not getattr(self, name):
                    raise ValueError(f"PARLEY_{name.upper()} must be set in production")
        return self

    @field_validator("master_key")
    @classmethod
    def _master_key_is_32_bytes(cls, value: str) -> str:
        if value:
            from infra.security.shredding import master_key_bytes

            master_key_bytes(value)  # ValueError says what is wrong
        return value

    @property
    def key_store_database(self) -> str:
        return self.key_store_db or f"{self.mongo_db}_keys"

    # Topic names ---------------------------------------------------------------
    @property
    def commands_topic(self) -> str:
        return f"{self.topic_prefix}.commands"

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def rejections_topic(self) -> str:
        """Commands the domain refused (written by workers only)."""
        return f"{self.topic_prefix}.rejections"

    @property
    def refusals_topic(self) -> str:
        """Commands a gateway refused itself: validation, authentication (written by gateways only).

        Kept apart from the worker's rejections so that no partition has two kinds of producer."""
        return f"{self.topic_prefix}.refusals"

    @property
    def rejection_topics(self) -> tuple[str, str]:
        return (self.rejections_topic, self.refusals_topic)

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letter"

    def table_changelog_topic(self, table: str) -> str:
        return f"{self.worker_id}-{table}-changelog"

    @property
    def run_file(self) -> Path:
        """Where `parley up` writes the URLs of the servers it started (read by other CLI commands)."""
        return self.data_dir / "run.json"

    def external(self) -> dict[str, bool]:
        return {
            "kafka": bool(self.kafka_bootstrap),
            "mongo": bool(self.mongo_url),
            "redis": bool(self.redis_url),
            "elasticsearch": bool(self.elasticsearch_url),
            "s3": bool(self.s3_endpoint),
        }
