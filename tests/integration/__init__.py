"""Integration tests against real local servers (loopback only)."""
