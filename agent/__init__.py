"""sq-agent: supervises model servers on a GPU host for the coordinator."""
