"""The HTTP/JSON API and the web console."""
