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
from dataclasses import dataclass
from pathlib import Path

import httpx

import app

# The server runs the code its caller imported (a git worktree's, say), whatever the directory
# it is started from or the package the interpreter has installed.
SOURCE_ROOT = str(Path(app.__file__).resolve().parents[1])


def source_env(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` with SOURCE_ROOT first on PYTHONPATH."""
    paths = [SOURCE_ROOT, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    return environment | {"PYTHONPATH": os.pathsep.join(paths)}


# What every benchmark server runs with, whatever the caller's environment says: no rate
# limit (a colleague's OUTCOMES_RATE_LIMIT_PER_MINUTE would turn the figures into 429s),
# warnings only in the log.
BENCH_ENV = {"OUTCOMES_LOG_LEVEL": "warning", "OUTCOMES_RATE_LIMIT_PER_MINUTE": "0"}


@dataclass(frozen=True, slots=True)
class Server:
    base: str  # http://127.0.0.1:<port>
    pid: int  # the `outcomes serve` process (uvicorn's supervisor when workers > 1)
    log: Path
    postgres: bool  # whether its database is PostgreSQL (not the embedded SQLite)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the workers, or the server itself."""
        children: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*/children"):
            children += [int(p) for p in task.read_text().split()]
        # uvicorn's supervisor spawns its workers with multiprocessing (besides a resource
        # tracker, which serves nothing).
        workers = [p for p in children if _is_worker(p)]
        return workers or [self.pid]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the serving processes have used so far."""
        ticks = 0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds() -> float | None:
    """CPU time (user + system) used so far by this machine's PostgreSQL processes (None when
    it runs none: SQLite, or a server elsewhere). A backend that exits takes its time with it:
    read it around a load whose connections stay open (the pools keep theirs)."""
    ticks, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if head.partition("(")[2] != "postgres":
            continue
        fields = tail.split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmdline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(
    database_url: str,
    *,
    workers: int = 1,
    migrate: bool = True,
    env: dict[str, str] | None = None,
    app: str | None = None,
) -> Iterator[Server]:
    """`outcomes serve` on a free loopback port until the block ends; or, with ``app``
    (an ASGI app factory, e.g. ``bench.floor_app:create_app``), uvicorn serving that app the
    same way (same loop, HTTP parser and workers)."""
    port = free_port()
    environment = os.environ | BENCH_ENV | {"OUTCOMES_DATABASE_URL": database_url} | (env or {})
    environment = source_env(environment)
    if app is None:
        args = ["app.cli", "serve", "--port", str(port), "--workers", str(workers)]
        args.append("--migrate" if migrate else "--no-migrate")
    else:
        args = ["uvicorn", app, "--factory", "--port", str(port), "--workers", str(workers)]
        args += ["--log-level", "warning", "--no-access-log"]
    # Output to a file, not a pipe: nobody reads a pipe during the run, and a full one blocks.
    log = Path(tempfile.mkstemp(prefix="outcomes-bench-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", *args],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    failed = False
    try:
        _wait_ready(proc, base, log, workers)
        yield Server(base, proc.pid, log, database_url.startswith("postgresql"))
    except BaseException:
        failed = True
        raise
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if failed:
            print(f"server log kept: {log}", file=sys.stderr)
        else:
            log.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, workers: int) -> None:
    """Until /readyz answers 200 as often as there are workers (each worker is up)."""
    deadline = time.monotonic() + 60
    ready = 0
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if client.get(f"{base}/readyz").status_code == 200:
                    ready += 1
                    if ready >= 2 * workers:
                        return
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise RuntimeError("server did not become ready in 60 s")
