"""Alembic revisions of the kit's file, run on the store's own (SQLCipher) connection.

A new store is created from the models (``popup_kit.store.tables``) and stamped at the
newest revision; a store from before Alembic (numbered schema 2) is stamped at
:data:`BASELINE` as it is. A later change to the models ships as a revision here.
"""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent
BASELINE = "0001"
HEAD = "0001"
"""The newest revision, so that an up-to-date store opens without loading Alembic; the
revisions themselves decide (a test checks this is their head)."""
