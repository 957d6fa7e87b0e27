"""API keys, callers (principals) and what each scope may call."""
