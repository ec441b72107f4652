"""The README's "Connecting an EHR" example is docs/examples/backend_services.py, word for
word, and it works: run as a user would, against a live server, it registers a key, gets a
token and exports every patient's data."""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.factories import API, create_course, create_observation, create_patient
from tests.support import Issue

SECTION = "## Connecting an EHR (SMART Backend Services)"


def test_the_readme_shows_the_example_script_as_it_is(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    [shown] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert shown == (repo_root / "docs/examples/backend_services.py").read_text()


async def test_the_example_connects_and_exports(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    issue_token: Issue,
    live_server: str,
    repo_root: Path,
    tmp_path: Path,
) -> None:
    patient = await create_patient(client, name="Example Patient")
    course = await create_course(client, patient["id"])
    for value in (8, 6, 5):
        await create_observation(client, patient["id"], value=value, course_id=course["id"])
    script = repo_root / "docs/examples/backend_services.py"

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), live_server, await issue_token("admin")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"registered client [0-9a-f-]{36}", lines[0]), lines
    assert lines[1:] == [
        "token granted: system/*.rs, for 300 s",
        "Patient: 1 resources",
        "CarePlan: 1 resources",
        "Procedure: 0 resources",
        "Observation: 3 resources",
    ]
    key = tmp_path / "backend-key.pem"
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    [registered] = (await admin.get(f"{API}/clients")).json()["items"]
    assert registered["name"] == "Example EHR"
    assert "d" not in registered["jwks"]["keys"][0]  # only the public key left the machine
