"""A throw-away PostgreSQL server (Debian's ``postgresql`` package) for the tests and the store benchmark:
its own data directory and port, trust authentication on 127.0.0.1 only, stopped and deleted at the end.

As root (PostgreSQL refuses to run as root) the server runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

INSTALL_HINT = "install Debian's postgresql (scripts/setup.sh test does)"


def postgres_bin() -> Path | None:
    """Directory of initdb / pg_ctl, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def temporary_postgres(workdir: Path, database: str = "medlens") -> Iterator[str]:
    """Start a server in ``workdir`` (emptied first); yield its SQLAlchemy URL; stop and delete it."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError(f"PostgreSQL is not installed: {INSTALL_HINT}")
    shutil.rmtree(workdir, ignore_errors=True)
    data, sock = workdir / "data", workdir / "sock"
    sock.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True, "timeout": 120}
    subprocess.run(
        _as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "medlens", "--auth=trust", "-E", "UTF8"]),
        **quiet,
    )
    options = f"-p {port} -k '{sock}' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
    log = workdir / "server.log"
    subprocess.run(
        _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        **quiet,
    )
    try:
        subprocess.run(
            _as_server_user([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "medlens", database]),
            **quiet,
        )
        yield f"postgresql+psycopg://medlens@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        for _ in range(50):
            if not (data / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(workdir, ignore_errors=True)
