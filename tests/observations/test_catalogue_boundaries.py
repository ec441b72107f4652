"""Behaviour at each boundary of the catalogue, with the numbers taken from the hand-written
contract (``tests/observations/support.CONTRACT``), never from the app's catalogue:

- the accepted range, through the HTTP API: the ends are accepted, just past them is a 422
  naming `value`, a fraction on a whole-number scale is a 422, and a range of motion may go past
  its `best` (normal) value;
- the MCID, through the pure ``improvement(instrument, baseline, value)``: just short of it, at
  it and just past it, in both directions (``improvement_abs >= mcid_abs`` is the MCID test);
- the remission value, through the policy's ``evaluate``: a responder exactly at it completes
  the course (`remission`), one just on the wrong side of it does not.

``classify`` and ``instrument_trend`` are deliberately not exercised here: their rules are being
changed elsewhere (status `normal`, improvement capped at 100%, pre-treatment baseline), so no
assertion here depends on them, and no improvement_pct above 100 is asserted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.analytics.policy import CourseState, evaluate
from app.analytics.registry import registry
from app.analytics.trends import InstrumentTrend, improvement
from app.observations.catalogue import BY_CODE
from tests.factories import API, ago, create_patient
from tests.observations.support import CONTRACT
from tests.support import assert_problem

INTEGER = [row for row in CONTRACT if row["integer"]]
CONTINUOUS = [row for row in CONTRACT if not row["integer"]]
LOWER_BETTER = [row for row in CONTRACT if row["better"] == "lower"]
HIGHER_BETTER = [row for row in CONTRACT if row["better"] == "higher"]
# Ranges of motion (the mobility measures whose best, the normal value, is inside the range).
PAST_BEST = [row for row in CONTRACT if row["better"] == "higher" and row["best"] < row["max"]]


def _code(row: dict[str, Any]) -> str:
    return str(row["code"])


def _step(row: dict[str, Any]) -> float:
    """The smallest step that changes a reading: 1 on a whole-number scale, else 0.5."""
    return 1 if row["integer"] else 0.5


async def _post(client: httpx.AsyncClient, patient_id: str, code: str, value: float) -> Any:
    body = {"instrument": code, "value": value, "recorded_at": ago(hours=1)}
    return await client.post(f"{API}/patients/{patient_id}/observations", json=body)


async def _stored_values(client: httpx.AsyncClient, patient_id: str) -> list[float]:
    page = (await client.get(f"{API}/patients/{patient_id}/observations")).json()
    return [item["value"] for item in page["items"]]


# --- the accepted range, through the API -------------------------------------------------------


@pytest.mark.parametrize("row", CONTRACT, ids=_code)
async def test_the_ends_of_the_range_are_accepted_and_just_past_them_is_422(
    client: httpx.AsyncClient, row: dict[str, Any]
) -> None:
    patient = await create_patient(client)
    for value in (row["min"], row["max"]):
        response = await _post(client, patient["id"], row["code"], value)
        assert response.status_code == 201, response.text
        assert response.json()["value"] == value
    for value in (row["min"] - 0.001, row["max"] + 0.001, row["min"] - 1, row["max"] + 1):
        response = await _post(client, patient["id"], row["code"], value)
        body = assert_problem(response, 422, loc=["body", "value"])
        [error] = body["errors"]
        assert row["code"] in error["msg"]
    assert sorted(await _stored_values(client, patient["id"])) == [row["min"], row["max"]]


@pytest.mark.parametrize("row", INTEGER, ids=_code)
async def test_a_fraction_on_a_whole_number_scale_is_422(
    client: httpx.AsyncClient, row: dict[str, Any]
) -> None:
    patient = await create_patient(client)
    for value in (row["min"] + 0.5, row["max"] - 0.5):
        response = await _post(client, patient["id"], row["code"], value)
        body = assert_problem(response, 422, loc=["body", "value"])
        assert "whole number" in body["errors"][0]["msg"]
    assert await _stored_values(client, patient["id"]) == []


@pytest.mark.parametrize("row", CONTINUOUS, ids=_code)
async def test_a_fraction_on_a_continuous_scale_is_accepted(
    client: httpx.AsyncClient, row: dict[str, Any]
) -> None:
    patient = await create_patient(client)
    response = await _post(client, patient["id"], row["code"], row["max"] - 0.5)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("row", PAST_BEST, ids=_code)
async def test_a_value_past_best_is_accepted_for_a_range_of_motion(
    client: httpx.AsyncClient, row: dict[str, Any]
) -> None:
    patient = await create_patient(client)
    for value in (row["best"], row["best"] + 0.5, row["best"] + 1):
        response = await _post(client, patient["id"], row["code"], value)
        assert response.status_code == 201, response.text


# --- the MCID, through improvement() -----------------------------------------------------------


def _towards_best(row: dict[str, Any], baseline: float, change: float) -> float:
    """The value ``change`` units better than ``baseline``."""
    return baseline - change if row["better"] == "lower" else baseline + change


def _baseline(row: dict[str, Any]) -> float:
    """Two MCIDs away from best, on the deficit side: the MCID is then 50% of the way."""
    best, away = float(row["best"]), 2 * float(row["mcid_abs"])
    return best + away if row["better"] == "lower" else best - away


def test_the_mcid_cases_cover_both_directions() -> None:
    assert LOWER_BETTER
    assert HIGHER_BETTER


@pytest.mark.parametrize("row", CONTRACT, ids=_code)
def test_improvement_just_short_of_at_and_just_past_the_mcid(row: dict[str, Any]) -> None:
    instrument = BY_CODE[row["code"]]
    baseline = _baseline(row)
    assert row["min"] <= baseline <= row["max"]
    mcid, step = row["mcid_abs"], _step(row)
    cases = [(mcid - step, False), (mcid, True), (mcid + step, True)]
    for change, reached in cases:
        value = _towards_best(row, baseline, change)
        assert row["min"] <= value <= row["max"]
        improvement_abs, improvement_pct = improvement(instrument, baseline, value)
        assert improvement_abs == pytest.approx(change)
        assert (improvement_abs >= instrument.mcid_abs) is reached, (change, instrument.mcid_abs)
        assert improvement_pct is not None
        assert improvement_pct == pytest.approx(100 * change / (2 * mcid))  # 50% at the MCID


@pytest.mark.parametrize("row", CONTRACT, ids=_code)
def test_the_same_change_the_wrong_way_is_a_worsening_of_the_mcid(row: dict[str, Any]) -> None:
    instrument = BY_CODE[row["code"]]
    baseline = row["best"]  # from the healthy end, the only way is the wrong way
    value = _towards_best(row, baseline, -row["mcid_abs"])
    assert row["min"] <= value <= row["max"]
    improvement_abs, improvement_pct = improvement(instrument, baseline, value)
    assert improvement_abs == -row["mcid_abs"]
    assert improvement_pct is None  # no deficit at baseline: no percentage of it


# --- the remission value, through the policy ---------------------------------------------------

START = date(2026, 3, 2)
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
COURSE = CourseState(
    status="active",
    adjustment="auto",
    sessions_per_week=3,
    sessions_done=6,
    max_sessions=None,
    start_date=START,
    last_change_source="initial",
    last_change_at=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
)


def _responder(row: dict[str, Any], current: float) -> InstrumentTrend:
    """A responder whose current value is ``current``, built by hand (not by the trend code)."""
    # The worst end of the scale as baseline: every value checked here is then a large
    # improvement (at most 100% of the way to best).
    baseline = row["max"] if row["better"] == "lower" else row["min"]
    improvement_abs = abs(current - baseline)
    # Keyword arguments only: if InstrumentTrend gains a field (the trend rules are changing
    # elsewhere), it may need adding here.
    return InstrumentTrend(
        instrument=row["code"],
        n=6,
        baseline=baseline,
        current=current,
        last_value=current,
        last_recorded_at=NOW - timedelta(days=1),
        improvement_abs=improvement_abs,
        improvement_pct=100 * improvement_abs / abs(baseline - row["best"]),
        slope_per_week=None,
        slope_ci=None,
        mann_kendall=None,
        mcid_reached=True,
        status="responder",
    )


def _just_wrong_side(row: dict[str, Any]) -> float:
    """Just outside remission: above it where lower is better, below it where higher is."""
    remission, step = float(row["remission"]), 0.5
    return remission + step if row["better"] == "lower" else remission - step


@pytest.mark.parametrize("row", CONTRACT, ids=_code)
def test_a_responder_exactly_at_remission_completes_the_course(row: dict[str, Any]) -> None:
    params = registry()["standard-v1"]
    trend = _responder(row, row["remission"])
    assert trend.improvement_pct is not None
    assert 0 < trend.improvement_pct <= 100
    rec = evaluate(params, COURSE, trend, BY_CODE[row["code"]], NOW)
    assert (rec.rule, rec.action) == ("remission", "complete")


@pytest.mark.parametrize("row", CONTRACT, ids=_code)
def test_a_responder_just_outside_remission_does_not_complete(row: dict[str, Any]) -> None:
    params = registry()["standard-v1"]
    trend = _responder(row, _just_wrong_side(row))
    assert trend.improvement_pct is not None
    assert 0 < trend.improvement_pct <= 100
    rec = evaluate(params, COURSE, trend, BY_CODE[row["code"]], NOW)
    assert rec.rule != "remission"
    assert rec.action != "complete"


def test_the_remission_cases_cover_both_directions() -> None:
    assert {row["better"] for row in CONTRACT} == {"lower", "higher"}
    nrs = next(row for row in CONTRACT if row["code"] == "pain-nrs")
    flexion = next(row for row in CONTRACT if row["code"] == "rom-lumbar-flexion")
    assert (_just_wrong_side(nrs), _just_wrong_side(flexion)) == (2.5, 54.5)
