"""`modules.sd_models`: CheckpointInfo and checkpoints_list (title -> info)."""

from __future__ import annotations

import os

from modules import hashes


class CheckpointInfo:
    def __init__(self, filename: str, root: str) -> None:
        self.filename = filename
        self.name = os.path.relpath(filename, root).replace("\\", "/")
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(self.name.replace("/", "_"))[0]
        self.is_safetensors = filename.lower().endswith(".safetensors")
        self.sha256 = hashes.sha256_from_cache(filename, f"checkpoint/{self.name}")
        self.shorthash = self.sha256[:10] if self.sha256 else None
        self.hash = None
        self.title = self.name if self.shorthash is None else f"{self.name} [{self.shorthash}]"
        self.short_title = (
            self.name_for_extra
            if self.shorthash is None
            else (f"{self.name_for_extra} [{self.shorthash}]")
        )


checkpoints_list: dict[str, CheckpointInfo] = {}
checkpoint_aliases: dict[str, CheckpointInfo] = {}


def list_models(root: str) -> None:
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    for entry in sorted(os.listdir(root)):
        if entry.endswith((".safetensors", ".ckpt")):
            info = CheckpointInfo(os.path.join(root, entry), root)
            checkpoints_list[info.title] = info
            checkpoint_aliases[info.title] = checkpoint_aliases[info.name] = info


def get_closet_checkpoint_match(search: str) -> CheckpointInfo | None:
    if search in checkpoint_aliases:
        return checkpoint_aliases[search]
    found = sorted((i for i in checkpoints_list.values() if search in i.title), key=len)
    return found[0] if found else None
