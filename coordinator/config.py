"""The coordinator's one configuration object.

Values come, in increasing precedence, from defaults, an optional YAML file,
`SQ_*` environment variables, and command-line flags. It is validated once at
start and passed in; nothing reads it from globals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_HTTP_LISTEN = "127.0.0.1:50080"


class Settings(BaseSettings):
    """Coordinator settings (env prefix `SQ_`)."""

    model_config = SettingsConfigDict(env_prefix="SQ_", extra="forbid")

    listen: str = Field(DEFAULT_LISTEN, description="host:port the gRPC server binds")
    data_dir: Path = Field(Path("./data"), description="folder for the SQLite file and outputs")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; SQLite in data_dir when unset"
    )
    http_listen: str = Field(
        DEFAULT_HTTP_LISTEN,
        description="host:port of the web console and HTTP/JSON API; 'off' serves none",
    )
    http_cors_origins: list[str] = Field(
        default_factory=list,
        description="origins (https://host:port) whose pages may call the HTTP API (none)",
    )
    require_auth: bool = Field(False, description="loopback callers need a key too")
    max_message_mb: int = Field(64, ge=1, le=1024, description="largest gRPC message accepted")
    log_level: str = Field("INFO")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    output_dir: Path | None = Field(None, description="where images go (default data_dir/outputs)")
    max_attempts: int = Field(3, ge=1, le=100, description="tries per job before it fails")
    attempt_timeout: float = Field(1800.0, gt=0, description="seconds one attempt may take")
    retry_backoff: float = Field(2.0, ge=0, description="first retry delay; doubles per attempt")
    health_interval: float = Field(10.0, gt=0, description="seconds between server probes")
    model_roots: list[Path] = Field(
        default_factory=list, description="folders the model library scans (recursively)"
    )
    hash_workers: int = Field(0, ge=0, le=64, description="parallel file hashes; 0 = CPU count")
    civitai_url: str = Field("https://civitai.com/api/v1", description="Civitai API base URL")
    civitai_token: SecretStr = Field(SecretStr(""), description="Civitai API token (optional)")
    civitai_interval: float = Field(
        1.0, ge=0, description="seconds between Civitai requests (they publish no limit)"
    )
    download_concurrency: int = Field(2, ge=1, le=16, description="downloads running at once")

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value

    @field_validator("http_listen")
    @classmethod
    def _http_listen_has_port(cls, value: str) -> str:
        if value.strip().lower() in ("", "off", "none"):
            return ""
        return cls._listen_has_port(value)

    @field_validator("http_cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"a CORS origin is http(s)://host[:port] or *, got {origin!r}")
        return [origin.rstrip("/") for origin in value]

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir or self.data_dir / "outputs"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'stablequeue.db').resolve()}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Builds the settings from a YAML file, the environment and explicit overrides.

    Args:
        config_file: optional YAML mapping of setting names to values.
        overrides: values given on the command line; None means "not given".

    Raises:
        ValueError: the file is unreadable or not a mapping, or a value is invalid.
    """
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"config file {config_file}: {e}") from e
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {config_file}: expected a mapping of settings")
        from_file = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    from_env = Settings().model_dump(exclude_unset=True)
    from_flags = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**{**from_file, **from_env, **from_flags})
