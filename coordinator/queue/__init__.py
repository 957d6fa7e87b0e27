"""The persistent job queue: states, validation, ordering, events and the queue service."""
