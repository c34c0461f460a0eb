"""Evaluation: retrieval and answer quality on question-answering datasets (`zhiku eval`)."""
