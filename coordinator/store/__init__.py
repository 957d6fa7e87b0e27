"""Persistence: SQLModel tables, numbered migrations and the database handle."""

from stablequeue_coordinator.store.db import Database

__all__ = ["Database"]
