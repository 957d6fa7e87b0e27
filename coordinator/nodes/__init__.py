"""Node agents connected to the coordinator."""
