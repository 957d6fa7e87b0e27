"""`models.yml`: the models a node can run (ARCHITECTURE.md), validated at start.

Every error names the model and the key (`models.sd15.port: ...`), so a bad file
is fixed in one go; all problems are reported together.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
KNOWN_PLACEHOLDERS = {"PORT", "MODEL", "HOST"}


class ConfigError(ValueError):
    """One or more problems in models.yml, one per line."""


class HuggingFaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    dest: str = "./models/"


class HuggingFaceSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: str
    revision: str = ""
    files: list[HuggingFaceFile] = Field(default_factory=list)


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    command: str
    args: list[str] = Field(default_factory=list)
    api: str = ""
    mode: Literal["on_demand", "preload"] = "on_demand"
    exec_mode: Literal["server", "cli"] = "server"
    port: int | None = Field(None, ge=1, le=65535)
    idle_timeout: float = Field(600.0, gt=0)
    startup_timeout: float = Field(120.0, gt=0)
    health_path: str = ""
    env: dict[str, str] = Field(default_factory=dict)
    vram_mb: int = Field(0, ge=0)
    huggingface: HuggingFaceSource | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str = ""
    models: dict[str, ModelConfig]
    # Where relative commands and paths are resolved (the config file's folder).
    base_dir: Path = Path(".")


def load_config(path: Path) -> AgentConfig:
    """Reads and validates `path`.

    Raises:
        ConfigError: every problem found, each naming the model and key.
    """
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'models'")
    try:
        config = AgentConfig(**raw, base_dir=path.resolve().parent)
    except ValidationError as e:
        raise ConfigError("\n".join(_describe(err) for err in e.errors())) from None
    problems = check(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _describe(error: dict[str, object]) -> str:
    where = ".".join(str(part) for part in error["loc"])  # type: ignore[union-attr]
    message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
    return f"{where}: {message}"


def resolve_command(command: str, base_dir: Path) -> str | None:
    """The executable `command` names: a path (relative to the config) or on PATH."""
    if os.sep in command or command.startswith("."):
        # Not resolved through symlinks: a venv's python is a link, and must stay one.
        candidate = Path(os.path.abspath(base_dir / command))
        return str(candidate) if os.access(candidate, os.X_OK) and candidate.is_file() else None
    return shutil.which(command)


def check(config: AgentConfig) -> list[str]:
    """Problems pydantic cannot see: commands, ports, placeholders, the default."""
    problems = []
    if not config.models:
        problems.append("models: at least one model is required")
    if config.default and config.default not in config.models:
        problems.append(f"default: {config.default!r} is not one of the models")
    ports: dict[int, str] = {}
    for key, model in config.models.items():
        where = f"models.{key}"
        if resolve_command(model.command, config.base_dir) is None:
            problems.append(f"{where}.command: {model.command!r} not found or not executable")
        texts = [*model.args, model.api]
        used = {name for text in texts for name in PLACEHOLDER.findall(text)}
        for name in sorted(used - KNOWN_PLACEHOLDERS):
            problems.append(f"{where}.args: unknown placeholder ${{{name}}}")
        if model.exec_mode == "cli" and "PORT" in used:
            problems.append(f"{where}.args: ${{PORT}} is for servers, not exec_mode: cli")
        if model.exec_mode == "server":
            if model.port is None and "PORT" not in {
                n for a in model.args for n in PLACEHOLDER.findall(a)
            }:
                problems.append(
                    f"{where}.args: no port is set, so the args must pass ${{PORT}} to the server"
                )
            if model.port is not None:
                if model.port in ports:
                    problems.append(
                        f"{where}.port: {model.port} is also used by models.{ports[model.port]}"
                    )
                ports[model.port] = key
    return problems
