"""The instrument catalogue: served as data, and every instrument's range enforced by the API
and, underneath it, by the database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import utcnow
from app.observations.catalogue import CATALOGUE, Instrument
from app.observations.models import Observation
from app.patients.models import Patient
from tests.factories import API, ago, create_patient
from tests.support import assert_problem

REQUIRED_CODES = {
    "pain-nrs",
    "pain-vas",
    "odi",
    "ndi",
    "schober",
    "finger-floor",
    "rom-lumbar-flexion",
    "rom-lumbar-extension",
    "rom-cervical-flexion",
    "rom-cervical-rotation",
}
FIELDS = {
    "code",
    "name",
    "kind",
    "unit",
    "min",
    "max",
    "integer",
    "better",
    "best",
    "mcid_abs",
    "mcid_pct",
    "remission",
    "loinc",
    "mcid_source",
}
INTEGER_INSTRUMENTS = [i for i in CATALOGUE if i.integer]


def _ids(instrument: Instrument) -> str:
    return instrument.code


async def _post(
    client: httpx.AsyncClient, patient_id: str, instrument: str, value: float
) -> httpx.Response:
    body = {"instrument": instrument, "value": value, "recorded_at": ago(hours=1)}
    return await client.post(f"{API}/patients/{patient_id}/observations", json=body)


async def _stored(client: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    page = (await client.get(f"{API}/patients/{patient_id}/observations")).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_catalogue_serves_every_required_instrument_with_every_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"{API}/instruments")
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert {item["code"] for item in body["items"]} >= REQUIRED_CODES
    for item in body["items"]:
        assert set(item) == FIELDS
        assert item["kind"] in {"pain", "mobility", "function"}
        assert item["better"] in {"lower", "higher"}
        assert item["min"] < item["max"]
        assert item["mcid_source"].strip()


async def test_catalogue_matches_the_source_of_truth(client: httpx.AsyncClient) -> None:
    items = {i["code"]: i for i in (await client.get(f"{API}/instruments")).json()["items"]}
    nrs = items["pain-nrs"]
    assert nrs == {
        "code": "pain-nrs",
        "name": "Pain intensity, 0–10 numeric rating scale",
        "kind": "pain",
        "unit": "{score}",
        "min": 0,
        "max": 10,
        "integer": True,
        "better": "lower",
        "best": 0,
        "mcid_abs": 2,
        "mcid_pct": 30,
        "remission": 2,
        "loinc": "72514-3",
        "mcid_source": "Farrar 2001; Ostelo 2008",
    }
    assert len(items) == len(CATALOGUE)


async def test_whole_numbers_render_without_a_decimal_point(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/instruments")
    assert '"max":10,' in response.text
    assert '"max":10.0' not in response.text


@pytest.mark.parametrize("instrument", CATALOGUE, ids=_ids)
async def test_min_and_max_are_accepted(client: httpx.AsyncClient, instrument: Instrument) -> None:
    patient = await create_patient(client)
    for value in (instrument.min, instrument.max):
        response = await _post(client, patient["id"], instrument.code, value)
        assert response.status_code == 201, response.text
        assert response.json()["value"] == value
    assert len(await _stored(client, patient["id"])) == 2


@pytest.mark.parametrize("instrument", CATALOGUE, ids=_ids)
@pytest.mark.parametrize("side", ["below-min", "above-max"])
async def test_value_outside_the_range_is_422_and_writes_nothing(
    client: httpx.AsyncClient, instrument: Instrument, side: str
) -> None:
    patient = await create_patient(client)
    value = instrument.min - 1 if side == "below-min" else instrument.max + 1
    response = await _post(client, patient["id"], instrument.code, value)
    body = assert_problem(response, 422, loc=["body", "value"])
    assert instrument.code in body["errors"][0]["msg"]
    assert await _stored(client, patient["id"]) == []


@pytest.mark.parametrize("instrument", CATALOGUE, ids=_ids)
async def test_just_outside_the_range_is_422(
    client: httpx.AsyncClient, instrument: Instrument
) -> None:
    patient = await create_patient(client)
    for value in (instrument.min - 0.001, instrument.max + 0.001):
        response = await _post(client, patient["id"], instrument.code, value)
        assert_problem(response, 422, loc=["body", "value"])
    assert await _stored(client, patient["id"]) == []


@pytest.mark.parametrize("instrument", INTEGER_INSTRUMENTS, ids=_ids)
async def test_fraction_on_an_integer_instrument_is_422_and_writes_nothing(
    client: httpx.AsyncClient, instrument: Instrument
) -> None:
    patient = await create_patient(client)
    response = await _post(client, patient["id"], instrument.code, instrument.min + 0.5)
    body = assert_problem(response, 422, loc=["body", "value"])
    assert "whole number" in body["errors"][0]["msg"]
    assert await _stored(client, patient["id"]) == []


@pytest.mark.parametrize("instrument", [i for i in CATALOGUE if not i.integer], ids=_ids)
async def test_fraction_on_a_continuous_instrument_is_accepted(
    client: httpx.AsyncClient, instrument: Instrument
) -> None:
    patient = await create_patient(client)
    response = await _post(client, patient["id"], instrument.code, instrument.min + 0.5)
    assert response.status_code == 201, response.text
    assert response.json()["value"] == instrument.min + 0.5


# The database CHECK holds the range even for writes that bypass the API.


async def _insert_directly(engine: AsyncEngine, instrument: str, value: float) -> None:
    patient_id = uuid.uuid4()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(insert(Patient).values(id=patient_id, created_at=now, updated_at=now))
    async with engine.begin() as conn:
        await conn.execute(
            insert(Observation).values(
                id=uuid.uuid4(),
                patient_id=patient_id,
                instrument=instrument,
                value=value,
                recorded_at=now,
                received_at=now,
            )
        )


async def test_database_accepts_an_in_range_value_written_directly(engine: AsyncEngine) -> None:
    await _insert_directly(engine, "pain-nrs", 7)  # the control: the insert itself is sound


@pytest.mark.parametrize(
    ("instrument", "value"),
    [("pain-nrs", 11), ("pain-nrs", -1), ("pain-nrs", 6.5), ("odi", 100.5), ("no-such", 1)],
)
async def test_database_check_rejects_an_out_of_range_value_written_directly(
    engine: AsyncEngine, instrument: str, value: float
) -> None:
    with pytest.raises(IntegrityError, match="value_in_instrument_range"):
        await _insert_directly(engine, instrument, value)
