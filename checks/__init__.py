"""Parity and data-quality checks. Each is reader-only and returns a CheckResult."""
