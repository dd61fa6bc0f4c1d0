from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.pg import PostgresUnavailable, create_database, postgres_cluster
from tests.sync.live_server import LiveServer, run_server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in /tmp; yields a server URL without a database.

    Skips where PostgreSQL is not installed, unless ``POPUP_KIT_REQUIRE_PG=1`` (set by CI,
    which installs it): there a missing cluster is a failure, not a skip.
    """
    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_cluster())
        except PostgresUnavailable as exc:
            if os.environ.get("POPUP_KIT_REQUIRE_PG") == "1":
                pytest.fail(f"PostgreSQL is required here: {exc}")
            pytest.skip(str(exc))
        yield url


def _pg_database(cluster: str) -> str:
    return create_database(cluster)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'server.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.sqlite3'}"
    return _pg_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture
def server(sqlite_url: str) -> Iterator[LiveServer]:
    with run_server(sqlite_url) as live:
        yield live


@pytest.fixture
def any_server(db_url: str) -> Iterator[LiveServer]:
    """The server on SQLite and on PostgreSQL."""
    with run_server(db_url) as live:
        yield live
