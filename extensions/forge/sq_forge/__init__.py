"""StableQueue inside Forge / AUTOMATIC1111: Queue buttons, settings, model sync, a tab."""
