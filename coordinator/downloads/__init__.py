"""Model downloads: Hugging Face, Civitai and URLs, resumable and verified."""
