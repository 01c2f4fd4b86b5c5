"""Development-only servers: never imported by production code paths."""
