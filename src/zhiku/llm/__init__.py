"""LLM backends behind one ChatModel protocol, and the scheduler that shares them among requests."""
