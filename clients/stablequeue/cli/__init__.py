"""The `sq` command line (needs the `server` extra for rich)."""
