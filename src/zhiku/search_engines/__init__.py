"""Web search providers for search-engine QA."""
