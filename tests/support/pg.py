"""A throwaway PostgreSQL cluster in /tmp, for the sync tests and the sync bench.

Started from the binaries of the Debian ``postgresql`` package (or ``pg_ctl`` on PATH);
as root it runs as the ``postgres`` account, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port


class PostgresUnavailable(RuntimeError):
    """The binaries or the account needed to run PostgreSQL here are missing."""


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


@contextmanager
def postgres_cluster(*, fsync: bool = False) -> Iterator[str]:
    """Yield a server URL without a database (``postgresql+psycopg://postgres@host:port``)."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise PostgresUnavailable("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    prefix: list[str] = []
    root = tempfile.mkdtemp(prefix="popup-kit-pg-")
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable("running as root and there is no 'postgres' user") from exc
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable("running as root and runuser is not available")
        prefix = [runuser, "-u", "postgres", "--"]
        os.chown(root, account.pw_uid, account.pw_gid)
    data = Path(root) / "data"
    port = free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
            f" -c fsync={'on' if fsync else 'off'}"
        )
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", f"{root}/log", "-w", "start"],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"PostgreSQL did not start: {exc}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(cluster: str) -> str:
    """A fresh, empty database on ``cluster``; returns its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    plain = cluster.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{cluster}/{name}"
