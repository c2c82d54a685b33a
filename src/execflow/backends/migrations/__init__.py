"""Alembic migrations of the execflow database, run programmatically by ``SqlDatabase``."""
