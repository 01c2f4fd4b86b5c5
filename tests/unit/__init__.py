"""Unit tests: one module or service at a time, against a real database file."""
