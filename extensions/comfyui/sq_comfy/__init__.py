"""StableQueue inside ComfyUI: routes under /stablequeue/, model hashes, inventory sync."""
