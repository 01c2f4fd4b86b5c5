"""Gatehouse test suite."""
