"""`make bench`: run every benchmark, print one line per figure, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import analytics_engine, write_path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url", help="PostgreSQL URL for the server benchmarks (default: SQLite)"
    )
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    figures: dict[str, Any] = {"analytics_engine": analytics_engine.main()}
    overhead = asyncio.run(write_path.run(url, patients=30, requests=300, rounds=5, concurrency=4))
    print(write_path.describe(overhead))
    figures["policy_write_overhead"] = {k: round(v, 3) for k, v in overhead.items()}
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": url.split(":", 1)[0],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "figures": figures,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
