"""The Gradio web UI, mounted into the same FastAPI app."""
