"""The server's Alembic migrations: the one schema definition for SQLite and PostgreSQL."""
