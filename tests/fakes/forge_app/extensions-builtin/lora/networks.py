"""The built-in Lora extension's `networks` module: available_networks (name -> file)."""

from __future__ import annotations

import os

from modules import hashes


class NetworkOnDisk:
    def __init__(self, name: str, filename: str) -> None:
        self.name = self.alias = name
        self.filename = filename
        self.is_safetensors = filename.lower().endswith(".safetensors")
        self.hash = hashes.sha256_from_cache(filename, f"lora/{name}", self.is_safetensors)
        self.shorthash = self.hash[:12] if self.hash else None


available_networks: dict[str, NetworkOnDisk] = {}


def list_available_networks(root: str) -> None:
    available_networks.clear()
    for entry in sorted(os.listdir(root)):
        if entry.endswith(".safetensors"):
            name = os.path.splitext(entry)[0]
            available_networks[name] = NetworkOnDisk(name, os.path.join(root, entry))
