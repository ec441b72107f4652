"""Load from a separate process: wrk with the Lua scripts in bench/wrk/.

wrk is a Debian package (`apt-get install -y wrk`); when it is missing, ``find_wrk`` installs
it if asked to and able to (root with apt-get), and otherwise says how to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
INSTALL_HINT = "wrk is needed for the HTTP figures: `sudo apt-get install -y wrk` (Debian/Ubuntu)"


class WrkMissing(RuntimeError):
    pass


def find_wrk(install: bool = False) -> str:
    """The wrk executable; installs the Debian package when ``install`` and running as root."""
    path = shutil.which("wrk")
    if path:
        return path
    apt = shutil.which("apt-get")
    if install and apt and os.geteuid() == 0:
        print("installing wrk with apt-get ...", flush=True)

        def apt_get(*words: str) -> int:
            done = subprocess.run(  # noqa: S603 (apt-get with fixed arguments)
                [apt, *words], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            return done.returncode

        if apt_get("install", "-y", "wrk") != 0:  # a fresh machine may have no package lists
            apt_get("update")
            apt_get("install", "-y", "wrk")
        path = shutil.which("wrk")
        if path:
            return path
    raise WrkMissing(INSTALL_HINT + " — or run `make bench BENCH_ARGS=--install-wrk` as root")


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk run: throughput, latency percentiles and every kind of error."""

    requests: int
    seconds: float
    per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors, timeouts, non-2xx responses and bad bodies
    first_error: str
    # The server's CPU time per request (its workers' user + system time over the run):
    # unlike throughput, it hardly depends on what else the machine is doing.
    cpu_ms: float | None = None
    # PostgreSQL's CPU time per request over the same run (its processes on this machine):
    # on a 2-core box the database shares the cores with the server and wrk.
    db_cpu_ms: float | None = None

    def as_dict(self) -> dict[str, float | int | str]:
        data = asdict(self)
        for key in (
            "seconds",
            "per_s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "cpu_ms",
            "db_cpu_ms",
        ):
            if data[key] is not None:
                data[key] = round(data[key], 2)
        if not self.first_error:
            del data["first_error"]
        return data


def write_targets(path: Path, patient_ids: Sequence[uuid.UUID], tokens: Sequence[str]) -> Path:
    """The "patient_id token" lines the Lua scripts spread their requests over."""
    lines = [f"{pid} {token}\n" for pid, token in zip(patient_ids, tokens, strict=True)]
    path.write_text("".join(lines))
    path.chmod(0o600)  # bearer tokens
    return path


def run_wrk(
    wrk: str,
    base: str,
    script: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 2,
    targets: Path | None = None,
    env: dict[str, str] | None = None,
) -> Load:
    """``wrk -t threads -c connections -d seconds -s bench/wrk/<script>.lua base``."""
    environment = os.environ | {"BENCH_WRK_DIR": str(WRK_DIR), "BENCH_THREADS": str(threads)}
    if targets is not None:
        environment["BENCH_TARGETS"] = str(targets)
    environment |= env or {}
    command = [
        wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
        "--timeout", "10s", "-s", str(WRK_DIR / f"{script}.lua"), base + "/",
    ]  # fmt: skip
    result = subprocess.run(  # noqa: S603 (wrk, our scripts, a loopback URL)
        command, env=environment, capture_output=True, text=True, timeout=seconds + 60
    )
    line = next(
        (ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_JSON ")),
        None,
    )
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk {script} failed: {result.stdout[-1500:]} {result.stderr[-1500:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    duration = raw["duration_us"] / 1e6
    # A status error is a non-2xx response too: count those once, from the Lua counter.
    errors = (
        raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
        + raw["non2xx"] + raw["bad_bodies"]
    )  # fmt: skip
    return Load(
        requests=raw["requests"],
        seconds=duration,
        per_s=raw["requests"] / duration if duration else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
        first_error=raw["first_error"],
    )
