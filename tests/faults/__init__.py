"""Fault tests: real processes killed and restarted under load (integration)."""
