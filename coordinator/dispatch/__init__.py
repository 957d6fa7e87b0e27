"""Dispatch: which pending job runs where (pure policy) and running it (the dispatcher)."""
