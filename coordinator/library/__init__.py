"""The model library: scanning, hashing, metadata, locations."""
