"""Alembic environment: revisions run on the connection ``popup_kit.store.db.migrate``
opens (already keyed, inside its write transaction; no URL, so no key in one)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
