"""The HTTP server: one FastAPI app with /v1, /api, /health, /metrics and the web UI."""
