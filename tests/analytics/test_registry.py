"""A clinic adds its own frequency policy as a JSON file, without code changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.analytics.registry import BUILT_IN, policies, registry
from app.core.config import get_settings
from tests.factories import API, create_course, create_patient


@pytest.fixture
def clinic_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    standard = json.loads((BUILT_IN / "standard-v1.json").read_text())
    own = standard | {
        "id": "clinic-gentle-v1",
        "description": "Steps down only after 14 days; responders from 40%.",
        "responder_pct": 40,
        "min_days_between_changes": 14,
    }
    (tmp_path / "clinic-gentle-v1.json").write_text(json.dumps(own))
    monkeypatch.setenv("OUTCOMES_POLICY_DIR", str(tmp_path))
    get_settings.cache_clear()
    registry.cache_clear()
    yield "clinic-gentle-v1"
    get_settings.cache_clear()
    registry.cache_clear()


def test_built_in_policy_is_always_there() -> None:
    assert "standard-v1" in policies()


async def test_course_can_name_a_clinic_policy(
    client: httpx.AsyncClient, clinic_policy: str
) -> None:
    assert set(policies()) == {"standard-v1", "standard-v2", clinic_policy}
    patient = await create_patient(client)
    course = await create_course(client, patient["id"], policy=clinic_policy)
    assert course["policy"] == clinic_policy
    recommendation = (await client.get(f"{API}/courses/{course['id']}/recommendation")).json()
    assert recommendation["policy_version"] == clinic_policy


async def test_new_courses_default_to_standard_v2(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    assert course["policy"] == "standard-v2"
