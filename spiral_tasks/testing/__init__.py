"""Helpers for tests and benchmarks that need real servers (like celery.contrib.testing)."""
