"""Where a server's time goes under one figure's load: py-spy on the workers, summarised.

    python -m bench.profile ingest_single            # PostgreSQL, 2 workers, 300 patients
    python -m bench.profile trends --seconds 15 --top 40
    python -m bench.profile ingest_single --sqlite   # the embedded default, 1 worker

Loads the default dataset into a fresh database, starts `outcomes serve`, drives the figure's
wrk script and records every worker with `py-spy record` (install it with
`.venv/bin/pip install py-spy`; it samples other processes, so it runs as root or with ptrace
rights). Samples are taken while a worker holds the GIL (`--gil`): they show where the
workers' CPU goes, not where they wait for the database. Prints the frames with the largest
inclusive share of the samples (the time under a frame, callees included) and the largest
self share, and keeps the collapsed stacks (flamegraph.pl and speedscope read them) in
bench/results/profile-<figure>.collapsed.tmp (ignored by git).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import databases, dataset, load
from bench.server import serve

RESULTS = Path(__file__).resolve().parent / "results"
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """``handler (app/observations/router.py:57)`` → ``app/observations/router.py:handler``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{match['func']}"


# Standard-library packages: their time is charged to the library that called them.
_STDLIB = {"asyncio", "multiprocessing", "concurrent", "json", "email", "http", "logging", "re"}


def _package(frame: str) -> str | None:
    """``sqlalchemy`` or ``app/analytics`` for a frame, None for the standard library."""
    match = _FRAME.match(frame.strip())
    if not match:
        return None
    parts = match["file"].split("/")
    if len(parts) == 1 or parts[0] in _STDLIB or parts[0].startswith("<"):
        return None  # weakref.py, asyncio/..., <string>
    if parts[0] == "app" and len(parts) > 2:
        return f"app/{parts[1]}"
    return parts[0]


def summarise(collapsed: str, top: int) -> str:
    """Shares of the samples in py-spy's collapsed (raw) output: by package (self time charged
    to the innermost non-stdlib frame), and by frame, inclusive and self."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        # The first frame names the process/thread; each function counts once per stack.
        for frame in set(frames[1:]):
            inclusive[frame] += count
        own[frames[-1]] += count
        package = next((p for f in reversed(stack.split(";")) if (p := _package(f))), None)
        packages[package or "standard library / event loop"] += count
        total += count
    if not total:
        return "no samples"
    lines = [
        f"{total} samples; by package (self time, the standard library charged to its caller):"
    ]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in packages.most_common(12)]
    lines.append("the service's own frames, inclusive (time under the frame, callees included):")
    ours = [(frame, n) for frame, n in inclusive.most_common() if frame.startswith("app/")]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ours[:top]]
    lines.append("self share (time in the frame itself):")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top // 2)]
    return "\n".join(lines)


def record(pids: list[int], seconds: float, out_dir: Path) -> str:
    """py-spy on every pid at once for ``seconds``; the concatenated collapsed stacks."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = []
    for pid in pids:
        out = out_dir / f"{pid}.txt"
        command = [
            py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
            "--format", "raw", "--gil", "--output", str(out),
        ]  # fmt: skip
        procs.append((subprocess.Popen(command, stdout=subprocess.DEVNULL), out))  # noqa: S603
    for proc, _ in procs:
        proc.wait(timeout=seconds + 60)
    return "".join(out.read_text() for _, out in procs if out.exists())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("figure", choices=["ingest_single", "ingest_batch", "trends", "healthz"])
    parser.add_argument("--postgres", default=databases.DEFAULT_POSTGRES, help="server URL")
    parser.add_argument("--sqlite", action="store_true", help="profile the SQLite default instead")
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    wrk = load.find_wrk()
    work = Path(tempfile.mkdtemp(prefix="outcomes-profile-"))
    if args.sqlite:
        with databases.sqlite_database() as url:
            text = _profile(url, 1, args, wrk, work)
    else:
        name = databases.bench_database_name("profile")
        with databases.postgres_databases(args.postgres) as created:
            url = databases.create_postgres(args.postgres, name)
            created.append(name)
            text = _profile(url, 2, args, wrk, work)
    RESULTS.mkdir(exist_ok=True)
    raw = RESULTS / f"profile-{args.figure}{'-sqlite' if args.sqlite else ''}.collapsed.tmp"
    raw.write_text(text)
    print(summarise(text, args.top))
    print(f"collapsed stacks: {raw}")
    shutil.rmtree(work, ignore_errors=True)


def _profile(url: str, workers: int, args: argparse.Namespace, wrk: str, work: Path) -> str:
    data = dataset.cohort(args.patients, args.observations)
    asyncio.run(dataset.write(url, data))
    asyncio.run(dataset.vacuum_analyze(url))
    ids = [p["id"] for p in data.patients]
    tokens = asyncio.run(dataset.issue_tokens(url, ids))
    targets = load.write_targets(work / "targets", ids, tokens)
    with serve(url, workers=workers, migrate=False) as server:
        load.run_wrk(wrk, server.base, args.figure, seconds=2, connections=8, targets=targets)
        driver = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", _DRIVE, wrk, server.base, args.figure, str(args.seconds + 2),
             str(args.connections), str(targets)],
        )  # fmt: skip
        text = record(server.worker_pids(), args.seconds, work)
        driver.wait(timeout=args.seconds + 60)
    return text


_DRIVE = """
import sys
from pathlib import Path
from bench import load
wrk, base, script, seconds, connections, targets = sys.argv[1:]
r = load.run_wrk(wrk, base, script, seconds=float(seconds), connections=int(connections),
                 targets=Path(targets))
print(f"{script}: {r.per_s:,.0f}/s p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms errors {r.errors}")
"""


if __name__ == "__main__":
    main()
