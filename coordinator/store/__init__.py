"""Persistence: SQLModel tables, numbered migrations and the database handle."""

from coordinator.store.db import Database

__all__ = ["Database"]
