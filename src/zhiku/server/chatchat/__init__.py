"""The Langchain-Chatchat 0.2 API (its port-7861 routes) as thin adapters over zhiku's services, so that
Chatchat's clients, scripts and web UI work against zhiku unchanged. routes.py mounts them; wire.py holds
the envelope, the stream framing and the score rule."""

# The path prefixes Chatchat's routes live under: API keys guard them as they guard /api and /v1.
PREFIXES = ("/chat", "/knowledge_base", "/llm_model", "/server", "/other")
