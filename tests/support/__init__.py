"""Shared pytest support code (plugins, fixtures, helpers)."""
