"""One function per CLI verb (alembic command.py style): importable, returning result objects."""
