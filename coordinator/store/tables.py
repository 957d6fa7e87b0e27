"""Tables. Schema changes go through a new numbered migration in `migrations/versions/`."""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class JobRow(SQLModel, table=True):
    """One queued job. `spec` is the serialized `stablequeue.v1.JobSpec`."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_order", "status", text("priority DESC"), "position", "id"),
        Index("ix_jobs_order", text("priority DESC"), "position", "id"),
        Index(
            "ix_jobs_owner_status_order",
            "submitted_by",
            "status",
            text("priority DESC"),
            "position",
            "id",
        ),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status_created", "status", "created_at", "id"),
        Index("ix_jobs_owner_status_created", "submitted_by", "status", "created_at", "id"),
        Index("ix_jobs_position", "position"),
        Index("ix_jobs_batch", "batch_id", "batch_index"),
        # Only the jobs that name a server (see migration 0010).
        Index(
            "ix_jobs_server",
            "server",
            sqlite_where=text("server IS NOT NULL"),
            postgresql_where=text("server IS NOT NULL"),
        ),
        Index(
            "ix_jobs_target_server",
            "target_server",
            sqlite_where=text("target_server IS NOT NULL"),
            postgresql_where=text("target_server IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    status: str = Field(max_length=16)
    stage: str = Field(max_length=32)
    reason: str = Field(default="")
    app: str = Field(max_length=16)
    target_server: str | None = Field(default=None, max_length=100)
    server: str | None = Field(default=None, max_length=100)
    priority: int = 0
    position: int = Field(sa_column=Column(BigInteger, nullable=False))
    attempts: int = 0
    submitted_by: str = Field(max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    batch_id: str | None = Field(default=None, max_length=32)
    batch_index: int = 0
    label: str = Field(default="", max_length=200)
    spec: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: NaiveDatetime
    updated_at: NaiveDatetime
    started_at: NaiveDatetime | None = None
    finished_at: NaiveDatetime | None = None
    # The backend's id for the running attempt (ComfyUI prompt id, Forge task id,
    # sd-server job id), so a restarted coordinator can find the work again.
    backend_task_id: str | None = Field(default=None, max_length=100)
    # Earliest time of the next attempt (retry backoff).
    not_before: NaiveDatetime | None = None
    # SHA-256 of the model file the job ran with, when the library knows it.
    model_sha256: str | None = Field(default=None, max_length=64)


class JobImageRow(SQLModel, table=True):
    """An img2img init image of a batch, stored once for all its jobs.

    The jobs' stored specs keep an empty placeholder per image (so their count is
    known without reading these rows); the queue fills them in when a job is read
    whole.
    """

    __tablename__ = "job_images"

    batch_id: str = Field(primary_key=True, max_length=32)
    idx: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ApiKeyRow(SQLModel, table=True):
    """An API key. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    scope: str = Field(max_length=16)
    secret_hash: str = Field(max_length=64, unique=True)
    created_at: NaiveDatetime
    last_used_at: NaiveDatetime | None = None
    revoked_at: NaiveDatetime | None = None
    # A node key's node (or the host an extension's key syncs): bound on first use.
    node: str | None = Field(default=None, max_length=100)


class IdempotencyRow(SQLModel, table=True):
    """Maps a caller's idempotency key to the batch it created."""

    __tablename__ = "idempotency_keys"

    owner: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    batch_id: str = Field(max_length=32)
    created_at: NaiveDatetime


class SettingRow(SQLModel, table=True):
    """Small durable coordinator state (e.g. whether the queue is paused)."""

    __tablename__ = "coordinator_state"

    name: str = Field(primary_key=True, max_length=100)
    value: str


class ServerRow(SQLModel, table=True):
    """A registered backend server. Password and token are never returned by the API."""

    __tablename__ = "servers"

    alias: str = Field(primary_key=True, max_length=100)
    kind: str = Field(max_length=16)
    base_url: str = Field(max_length=500)
    username: str = Field(default="", max_length=200)
    password: str = Field(default="", max_length=500)
    bearer_token: str = Field(default="", max_length=2000)
    max_concurrency: int = 1
    labels: str = "{}"
    enabled: bool = True
    paused: bool = False
    created_at: NaiveDatetime
    updated_at: NaiveDatetime


class ResultRow(SQLModel, table=True):
    """One stored image of a job; `path` is relative to the output folder."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("job_id", "idx", name="uq_results_job_idx"),
        Index("ix_results_created", "created_at", "id"),
        Index("ix_results_model", "model"),
    )

    id: str = Field(primary_key=True, max_length=32)
    job_id: str = Field(max_length=32)
    idx: int
    path: str = Field(max_length=1000)
    mime: str = Field(max_length=50)
    width: int = 0
    height: int = 0
    seed: int = Field(default=-1, sa_column=Column(BigInteger, nullable=False))
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    infotext: str = ""
    prompt: str = ""
    model: str = Field(default="", max_length=500)
    server: str = Field(default="", max_length=100)
    created_at: NaiveDatetime


class ModelRow(SQLModel, table=True):
    """One model, identified by the SHA-256 of its content; JSON lists as text."""

    __tablename__ = "models"
    __table_args__ = (
        Index("ix_models_autov2", "autov2"),
        Index("ix_models_autov1", "autov1"),
        Index("ix_models_autov3", "autov3"),
        Index("ix_models_type_name", "type", "name"),
    )

    sha256: str = Field(primary_key=True, max_length=64)
    autov2: str = Field(max_length=10)
    autov1: str = Field(default="", max_length=8)
    autov3: str = Field(default="", max_length=64)
    blake3: str = Field(default="", max_length=64)
    name: str = Field(default="", max_length=500)
    type: str = Field(default="", max_length=32)
    base_model: str = Field(default="", max_length=64)
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    description: str = ""
    trained_words: str = "[]"
    tags: str = "[]"
    civitai_model_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    civitai_version_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    version_name: str = Field(default="", max_length=500)
    source_url: str = Field(default="", max_length=1000)
    preview_url: str = Field(default="", max_length=1000)
    # A preview image file on the coordinator's disk, when one was found.
    preview_path: str = Field(default="", max_length=2000)
    # When Civitai was last asked; "missing" remembers a 404 so it is not asked again.
    civitai_checked_at: NaiveDatetime | None = None
    civitai_status: str = Field(default="", max_length=16)
    created_at: NaiveDatetime
    updated_at: NaiveDatetime


class LocationRow(SQLModel, table=True):
    """One file on one host, as one source reported it (`source`: "probe", "sync",
    "scan", "download"); a source replaces only its own rows. For the coordinator's own
    model roots it is also the hash cache: unchanged (path, size, mtime) means the
    stored hashes still hold."""

    __tablename__ = "model_locations"
    __table_args__ = (
        UniqueConstraint("host", "source", "path", name="uq_locations_host_source_path"),
        Index("ix_locations_host_path", "host", "path"),
        Index("ix_locations_sha256", "sha256"),
        Index("ix_locations_name_key", "name_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=100)
    # Who reported it; see the class docstring.
    source: str = Field(default="probe", max_length=16)
    path: str = Field(max_length=2000)
    # The exact name the host's backend selects it by.
    backend_name: str = Field(default="", max_length=2000)
    app: str = Field(default="", max_length=16)
    type: str = Field(default="", max_length=32)
    # Lower-case file name without extension, for name look-ups.
    name_key: str = Field(default="", max_length=500)
    sha256: str | None = Field(default=None, max_length=64)
    # False while the content is only presumed (matched by name, not hashed).
    verified: bool = False
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    seen_at: NaiveDatetime


class DownloadRow(SQLModel, table=True):
    """A model download; unfinished ones resume when the coordinator starts again."""

    __tablename__ = "downloads"
    __table_args__ = (Index("ix_downloads_state", "state"),)

    id: str = Field(primary_key=True, max_length=32)
    state: str = Field(max_length=16)  # queued, downloading, verifying, completed, ...
    # "huggingface", "url" or "civitai"; `source` is its JSON (a URL may carry a token:
    # only `shown` is ever returned).
    kind: str = Field(max_length=16)
    source: str
    shown: str = Field(default="", max_length=2000)
    dest: str = Field(default="", max_length=2000)
    sha256: str = Field(default="", max_length=64)
    node: str = Field(default="", max_length=100)
    dest_path: str = Field(default="", max_length=2000)
    bytes_done: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    bytes_total: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    error: str = ""
    model_id: str = Field(default="", max_length=64)
    created_at: NaiveDatetime
    updated_at: NaiveDatetime
