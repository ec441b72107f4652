"""The instrument catalogue pinned to the contract (docs/analytics.md and the design's
"Instruments" table, catalogue v2).

The contract is ``tests/observations/support.CONTRACT``, written out by hand from the design
table, NOT derived from app code. The Python catalogue and ``GET /api/v1/instruments`` are both
compared with it, field by field and in order: adding, dropping, reordering or changing any
value of any instrument fails a test here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from app.observations.catalogue import CATALOGUE, Instrument
from tests.factories import API
from tests.observations.support import CONTRACT, CONTRACT_BY_CODE, FIELDS, NO_SOURCE


def _typed(row: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each value with its JSON kind, so that True is not 1 and "2" is not 2."""

    def kind(value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int | float):
            return "number"
        return "null" if value is None else type(value).__name__

    return {name: (kind(value), value) for name, value in row.items()}


def _as_row(instrument: Instrument) -> dict[str, Any]:
    return {f.name: getattr(instrument, f.name) for f in dataclasses.fields(instrument)}


def test_the_contract_table_is_well_formed() -> None:
    """A check on the hand-written table itself, so a typo in it is not mistaken for a bug."""
    assert [tuple(row) for row in CONTRACT] == [FIELDS] * len(CONTRACT)
    assert len(CONTRACT_BY_CODE) == len(CONTRACT) == 10
    for row in CONTRACT:
        assert row["min"] <= row["best"] <= row["max"]
        assert row["min"] <= row["remission"] <= row["max"]
        assert row["mcid_source"].strip()


def test_the_instrument_has_exactly_the_contract_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(Instrument)) == FIELDS


def test_the_python_catalogue_is_the_contract_in_order() -> None:
    assert [i.code for i in CATALOGUE] == [row["code"] for row in CONTRACT]
    for instrument in CATALOGUE:
        assert _typed(_as_row(instrument)) == _typed(CONTRACT_BY_CODE[instrument.code])


def test_every_instrument_names_the_source_of_its_mcid() -> None:
    for instrument in CATALOGUE:
        assert instrument.mcid_source.strip(), instrument.code
    without = {i.code for i in CATALOGUE if i.mcid_source == NO_SOURCE}
    assert without == {"rom-lumbar-extension"}


async def test_the_api_serves_the_contract_in_order(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/instruments")
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    items: list[dict[str, Any]] = body["items"]
    assert [item["code"] for item in items] == [row["code"] for row in CONTRACT]
    for item in items:
        assert tuple(item) == FIELDS
        assert _typed(item) == _typed(CONTRACT_BY_CODE[item["code"]])
        assert item["mcid_source"].strip()


async def test_the_openapi_schema_documents_mcid_source(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schema = document["components"]["schemas"]["InstrumentRead"]
    assert set(schema["required"]) == set(FIELDS)
    mcid_source = schema["properties"]["mcid_source"]
    assert mcid_source["type"] == "string"
    assert NO_SOURCE in mcid_source["description"]
