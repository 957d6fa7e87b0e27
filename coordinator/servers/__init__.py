"""Registered backend servers: their settings, health and pause state."""
