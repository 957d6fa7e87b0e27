"""The StableQueue tab for gradio: in Forge, and standalone as `sq dashboard`.

Needs gradio (present in Forge; `pip install 'stablequeue[dashboard]'` otherwise).
"""

from stablequeue.dashboard.feed import QueueFeed, unreachable

__all__ = ["QueueFeed", "unreachable"]
