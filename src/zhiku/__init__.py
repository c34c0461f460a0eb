"""知库 zhiku: offline knowledge-base question answering on an ordinary CPU."""

__version__ = "0.1.0"
