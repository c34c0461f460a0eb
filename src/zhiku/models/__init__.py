"""Model packs: names that resolve to verified GGUF files."""
