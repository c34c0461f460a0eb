"""Placeholder schema, filled in by its owner."""

SCHEMA = ""
