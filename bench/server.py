"""Start and stop a real `outcomes serve` process for benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(database_url: str, *, workers: int = 1) -> Iterator[str]:
    """`outcomes serve` on a free loopback port; yields its base URL."""
    port = free_port()
    env = os.environ | {"OUTCOMES_DATABASE_URL": database_url, "OUTCOMES_LOG_LEVEL": "warning"}
    args = ["serve", "--migrate", "--port", str(port), "--workers", str(workers)]
    # Output to a file, not a pipe: nobody reads a pipe during the run, and a full one blocks.
    log = Path(tempfile.mkstemp(prefix="outcomes-bench-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready in 60 s")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.unlink(missing_ok=True)
