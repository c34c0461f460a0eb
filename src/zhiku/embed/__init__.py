"""Embedders behind one Embedder protocol."""
