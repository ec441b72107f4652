"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against the app
under a real uvicorn server on 127.0.0.1 (tests/support.serving), on the suite's database.

What is drawn is checked against the API's own numbers. Every page is guarded
(support.guarded_context): a request to any host but 127.0.0.1 is refused and fails the
test, as does a Content-Security-Policy violation or a script error. The data (a few demo
patients, a confirm course awaiting a decrease, a course with an adverse event, patients with
no course) is written once for the module through the API, and removed at its end.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, Route

from app.auth.service import TokenService
from app.core.config import Settings
from app.core.state import app_state
from app.demo import build_plan, write_patient
from app.main import create_app
from tests.dashboard.support import (
    WAIT_MS,
    Guard,
    chromium,
    confirm_course_awaiting_a_decrease,
    course_with_an_adverse_event,
    guarded_context,
    open_signed_in,
    sign_in,
    skip_without_browser,
)
from tests.factories import API, create_patient
from tests.support import client_of, empty_tables, serving

DEMO_PATIENTS = 3
PAGE_SIZE = 10  # the patient list's page (app/dashboard/static/js/views/patients.js)


@dataclass
class World:
    base: str  # the live server
    api: httpx.AsyncClient  # a clinician, in-process, to read what the dashboard should show
    tokens: dict[str, str]  # by role; the patient's is bound to the confirm course's patient
    confirm: tuple[str, str]  # (patient id, course id): a confirm course awaiting a decrease
    adverse: tuple[str, str]  # (patient id, course id): a session with an adverse event
    demo: list[str]  # the demo patients' ids

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.api.get(f"{API}{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
async def world(app: FastAPI, settings: Settings) -> AsyncIterator[World]:
    skip_without_browser()
    state = app_state(app)
    tokens: dict[str, str] = {}

    async def issue(role: str, patient_id: str | None = None) -> str:
        async with state.sessionmaker() as session, session.begin():
            issued = await TokenService(session).issue(
                role, None if patient_id is None else uuid.UUID(patient_id)
            )
        return issued.token

    for role in ("admin", "clinician", "dashboard", "integration"):
        tokens[role] = await issue(role)
    async with client_of(app, tokens["clinician"]) as api:
        demo = []
        for planned in build_plan(DEMO_PATIENTS, 42, datetime.now(UTC).date()):
            await write_patient(api, planned)
            found = await api.get(f"{API}/patients", params={"external_id": planned.external_id})
            demo.append(found.json()["items"][0]["id"])
        confirm = await confirm_course_awaiting_a_decrease(api)
        adverse = await course_with_an_adverse_event(api)
        for number in range(PAGE_SIZE + 1 - DEMO_PATIENTS - 2):
            await create_patient(
                api, name=f"Waiting {number}", external_id=f"DASH-waiting-{number}"
            )
        tokens["patient"] = await issue("patient", confirm[0])
        # Revocations reach the live server at once (its own token cache is off).
        live = create_app(settings.model_copy(update={"token_cache_seconds": 0}))
        with serving(live) as base:
            yield World(base, api, tokens, confirm, adverse, demo)
    await empty_tables(state.engine)


@pytest.fixture(scope="module")
async def browser(world: World) -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def guarded(browser: Browser) -> AsyncIterator[tuple[Page, Guard]]:
    async with guarded_context(browser) as (context, guard):
        yield await context.new_page(), guard
    guard.check()


@pytest.fixture
def page(guarded: tuple[Page, Guard]) -> Page:
    return guarded[0]


def percent(share: float) -> str:
    """As the dashboard writes a share (dom.js percent): one decimal at most."""
    text = f"{100 * share:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


async def texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in await page.locator(selector).all_inner_texts()]


# --- signing in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "clinician", "dashboard"])
async def test_each_allowed_role_signs_in_and_sees_the_cohort_as_the_api_counts_it(
    world: World, page: Page, role: str
) -> None:
    await sign_in(page, world.base, world.tokens[role])
    cohort = await world.get("/cohort/summary")
    courses = page.locator("[data-testid=courses]")
    assert await courses.inner_text() == str(cohort["courses"])
    rate = page.locator("[data-testid=responder-rate]")
    assert float(await rate.get_attribute("data-value") or "nan") == cohort["responder_rate"]
    assert await rate.inner_text() == percent(cohort["responder_rate"])
    for status, count in cohort["by_status"].items():
        cell = page.locator(f"[data-testid=by-status] tr[data-status='{status}'] td.count")
        assert await cell.inner_text() == str(count)
    weeks = await page.locator("[data-testid=weeks-table] tbody tr").count()
    assert weeks == len(cohort["improvement_by_week"])
    assert await page.locator("[data-chart=improvement] canvas").count() >= 1
    # The token is in this tab's sessionStorage only: no cookie, not in the URL.
    assert (
        await page.evaluate("sessionStorage.getItem('outcomes.dashboard.token')")
        == (world.tokens[role])
    )
    assert await page.context.cookies() == []
    assert world.tokens[role] not in page.url


async def test_a_dashboard_token_is_told_which_views_need_another_role(
    world: World, page: Page
) -> None:
    await sign_in(page, world.base, world.tokens["dashboard"])
    await page.click("#nav a[data-view=patients]")
    await page.wait_for_selector("main .notice", timeout=WAIT_MS)
    assert "need a clinician or admin token" in await page.inner_text("main .notice")
    pid, cid = world.confirm
    await page.goto(f"{world.base}/dashboard#/patients/{pid}/courses/{cid}")
    await page.wait_for_selector("main .notice", timeout=WAIT_MS)
    assert "need a clinician or admin token" in await page.inner_text("main .notice")


@pytest.mark.parametrize("role", ["patient", "integration"])
async def test_a_patient_or_integration_token_is_refused_with_a_clear_message(
    world: World, page: Page, role: str
) -> None:
    await page.goto(f"{world.base}/dashboard")
    await page.fill("#token", world.tokens[role])
    await page.click("form.signin button[type=submit]")
    message = page.locator("form.signin .notice.error")
    await message.wait_for(timeout=WAIT_MS)
    assert "dashboard, clinician or admin token" in await message.inner_text()
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.locator("#nav").is_hidden()


async def test_an_unknown_token_is_refused(world: World, page: Page) -> None:
    await page.goto(f"{world.base}/dashboard")
    await page.fill("#token", "otk_" + "x" * 43)
    await page.press("#token", "Enter")
    message = page.locator("form.signin .notice.error")
    await message.wait_for(timeout=WAIT_MS)
    assert "refused" in await message.inner_text()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_revoked_token_sends_the_user_back_to_sign_in_with_a_message(
    world: World, app: FastAPI, page: Page
) -> None:
    async with app_state(app).sessionmaker() as session, session.begin():
        issued = await TokenService(session).issue("clinician")
    await sign_in(page, world.base, issued.token)
    async with app_state(app).sessionmaker() as session, session.begin():
        await TokenService(session).revoke(issued.row.id)
    await page.click("#nav a[data-view=patients]")
    await page.locator("#token").wait_for(timeout=WAIT_MS)
    assert "Your token was refused" in await page.inner_text("main .notice")
    assert await page.evaluate("sessionStorage.length") == 0
    # Signing in again returns to the view the user was on.
    await page.fill("#token", world.tokens["clinician"])
    await page.press("#token", "Enter")
    await page.locator("main h1", has_text="Patients").wait_for(timeout=WAIT_MS)


async def test_signing_out_forgets_the_token(world: World, page: Page) -> None:
    await sign_in(page, world.base, world.tokens["clinician"])
    await page.click("#sign-out")
    await page.locator("#token").wait_for(timeout=WAIT_MS)
    assert await page.evaluate("sessionStorage.length") == 0
    assert "You signed out" in await page.inner_text("main")


# --- the views ------------------------------------------------------------------------------------


async def test_the_patient_list_shows_each_patients_course_as_the_api_does(
    world: World, page: Page
) -> None:
    await open_signed_in(page, world.base, world.tokens["clinician"], "clinician", "#/patients")
    rows = page.locator("[data-testid=patients] tbody tr")
    await rows.first.wait_for(timeout=WAIT_MS)
    first_page = (await world.get("/patients", limit=PAGE_SIZE))["items"]
    assert await rows.count() == len(first_page) == PAGE_SIZE
    today = datetime.now().date().isoformat()  # the browser's day (the same machine)
    for patient in first_page:
        summary = await world.get(f"/patients/{patient['id']}/summary")
        row = rows.filter(has_text=patient["name"])
        assert await row.count() == 1
        if not summary["courses"]:
            assert "No course yet" in await row.inner_text()
            continue
        course = summary["courses"][0]
        due = row.locator("[data-testid=due]")
        overdue = course["status"] == "active" and course["next_session_due"] < today
        assert await due.get_attribute("data-overdue") == ("true" if overdue else "false")
        if course["status"] == "active":
            frequency = await row.locator("[data-testid=frequency]").inner_text()
            assert frequency.startswith(f"{course['sessions_per_week']} a week")
        action = row.locator("[data-testid=action]")
        assert await action.get_attribute("data-action") == course["recommendation"]["action"]
    confirm_row = rows.filter(has_text="Ana Confirm")
    assert "awaits a clinician's confirmation" in await confirm_row.inner_text()

    # Sorting orders the page; the header says how.
    header = page.locator("[data-testid=patients] th:has(button[data-sort=patient])")
    await header.locator("button").click()
    assert await header.get_attribute("aria-sort") == "ascending"
    names = await texts(
        page, "[data-testid=patients] tbody th a, [data-testid=patients] tbody th .name"
    )
    assert names == sorted(names, key=str.lower)
    await header.locator("button").click()
    assert await header.get_attribute("aria-sort") == "descending"

    # The next page holds the rest.
    await page.click("text=Next page")
    await page.wait_for_selector("text=Page 2", timeout=WAIT_MS)
    everyone = (await world.get("/patients", limit=500))["items"]
    assert await rows.count() == len(everyone) - PAGE_SIZE
    await page.click("text=Previous page")
    await page.wait_for_selector("text=Page 1", timeout=WAIT_MS)


async def _open_course(world: World, page: Page, patient_id: str, course_id: str) -> None:
    await page.goto(f"{world.base}/dashboard#/patients/{patient_id}/courses/{course_id}")
    drawn = page.locator(f"section.recommendation[data-course='{course_id}']")
    await drawn.wait_for(timeout=WAIT_MS)
    await page.wait_for_function(
        "document.querySelectorAll('figure[data-chart] canvas').length >= "
        "document.querySelectorAll('figure[data-chart]').length",
        timeout=WAIT_MS,
    )


async def _check_course_against_the_api(world: World, page: Page, pid: str, cid: str) -> None:
    trends = await world.get(f"/patients/{pid}/trends", course_id=cid)
    assert trends["instruments"], "a course with values"
    for trend in trends["instruments"]:
        section = page.locator(f"section.instrument[data-instrument='{trend['instrument']}']")
        figure = section.locator("figure[data-chart]")
        assert await figure.get_attribute("data-points") == str(trend["n"]), trend["instrument"]
        assert await section.locator("[data-testid=values] tbody tr").count() == trend["n"]
        assert await figure.locator("canvas").count() >= 1
        shown = await section.locator("[data-testid=baseline]").get_attribute("data-value")
        if trend["baseline"] is None:
            assert shown == ""
        else:
            assert float(shown or "nan") == trend["baseline"]
        label = await figure.locator(".chart").get_attribute("aria-label")
        assert f"{trend['n']} values" in str(label)
    history = await world.get(f"/courses/{cid}/frequency-history")
    assert await page.locator("[data-testid=history] tbody tr").count() == len(history["items"])
    frequency = page.locator("figure[data-chart=frequency]")
    assert await frequency.get_attribute("data-steps") == str(len(history["items"]))
    sessions = (await world.get(f"/courses/{cid}/sessions", limit=500))["items"]
    assert await frequency.get_attribute("data-sessions") == str(len(sessions))
    adverse = [s for s in sessions if s["adverse_events"]]
    marked = page.locator("[data-testid=sessions] tbody tr[data-adverse=true]")
    assert await marked.count() == len(adverse)
    rec = await world.get(f"/courses/{cid}/recommendation")
    assert await page.inner_text("[data-testid=rationale]") == rec["rationale"]


async def test_a_course_draws_what_the_api_says(world: World, page: Page) -> None:
    await open_signed_in(page, world.base, world.tokens["admin"], "admin", "#/cohort")
    for pid in world.demo:
        course = (await world.get(f"/patients/{pid}/courses"))["items"][0]
        await _open_course(world, page, pid, course["id"])
        await _check_course_against_the_api(world, page, pid, course["id"])
    for pid, cid in (world.confirm, world.adverse):
        await _open_course(world, page, pid, cid)
        await _check_course_against_the_api(world, page, pid, cid)
    # The adverse event is marked in the sessions' table, with its text, not by colour only.
    assert "local haematoma" in str(await page.text_content("[data-testid=sessions]"))


async def test_a_clinician_applies_a_confirm_recommendation_and_sees_the_history_change(
    world: World, page: Page
) -> None:
    pid, cid = await confirm_course_awaiting_a_decrease(world.api, name="Carla Apply")
    await open_signed_in(page, world.base, world.tokens["clinician"], "clinician", "#/cohort")
    await _open_course(world, page, pid, cid)
    history = page.locator("[data-testid=history] tbody tr")
    assert await history.count() == 1
    button = page.locator("button[data-testid=apply]")
    assert await button.inner_text() == "Apply: 2 sessions a week"

    await button.click()  # no reason yet: refused in the page, nothing sent
    assert "Write the reason" in await page.inner_text("form.apply")
    await page.fill("#apply-reason", "pain 8 → 4 after three sessions: step down")
    await button.click()
    await page.locator(".notice.success").wait_for(timeout=WAIT_MS)
    await page.wait_for_function(
        "document.querySelector('figure[data-chart=frequency]')?.dataset.steps === '2'",
        timeout=WAIT_MS,
    )
    assert await history.count() == 2
    last = history.nth(1)
    assert await last.get_attribute("data-source") == "clinician"
    assert "pain 8 → 4 after three sessions: step down" in await last.inner_text()
    assert await page.inner_text("[data-testid=current-frequency]") == "2 a week"
    assert await page.locator("button[data-testid=apply]").count() == 0

    api_history = (await world.get(f"/courses/{cid}/frequency-history"))["items"]
    assert [(r["sessions_per_week"], r["source"]) for r in api_history] == [
        (3, "initial"),
        (2, "clinician"),
    ]
    assert api_history[1]["reason"] == "pain 8 → 4 after three sessions: step down"


async def test_the_service_unavailable_state_offers_a_retry(world: World, page: Page) -> None:
    await open_signed_in(page, world.base, world.tokens["dashboard"], "dashboard", "#/cohort")
    await page.locator("[data-testid=courses]").wait_for(timeout=WAIT_MS)

    async def down(route: Route) -> None:
        await route.fulfill(
            status=503,
            headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
            body='{"type": "urn:outcomes:problem:database-unavailable", "title": '
            '"Service Unavailable", "status": 503, "detail": "The database is unavailable."}',
        )

    await page.route(re.compile(r".*/api/v1/cohort/summary.*"), down)
    await page.fill("#filter-indication", "spondylosis")
    await page.click("text=Apply filters")
    alert = page.locator("main [role=alert]")
    await alert.wait_for(timeout=WAIT_MS)
    assert "The service is unavailable" in await alert.inner_text()
    await page.unroute(re.compile(r".*/api/v1/cohort/summary.*"))
    await alert.locator("button", has_text="Retry").click()
    await page.locator("[data-testid=courses]").wait_for(timeout=WAIT_MS)
    assert "spondylosis" in await page.inner_text("main .lede")


async def test_cohort_filters_reach_the_api(world: World, page: Page) -> None:
    await open_signed_in(page, world.base, world.tokens["clinician"], "clinician", "#/cohort")
    await page.locator("#filter-technique").wait_for(timeout=WAIT_MS)
    await page.select_option("#filter-technique", "intramuscular")
    await page.click("text=Apply filters")
    await page.wait_for_function("location.hash.includes('technique=intramuscular')")
    await page.locator("main .lede", has_text="intramuscular").wait_for(timeout=WAIT_MS)
    cohort = await world.get("/cohort/summary", technique="intramuscular")
    if cohort["courses"]:
        assert await page.inner_text("[data-testid=courses]") == str(cohort["courses"])
    else:
        assert "No course matches these filters" in await page.inner_text("main")


# --- usable by a person ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1280, 768])
async def test_every_view_fits_the_width(world: World, browser: Browser, width: int) -> None:
    async with guarded_context(browser, width=width, height=900) as (context, guard):
        page = await context.new_page()
        pid, cid = world.confirm
        views = [
            ("#/cohort", "[data-chart=improvement] canvas"),
            ("#/patients", "[data-testid=patients]"),
            (f"#/patients/{pid}/courses/{cid}", "[data-chart=frequency] canvas"),
        ]
        for view, drawn in views:
            await open_signed_in(page, world.base, world.tokens["clinician"], "clinician", view)
            await page.locator(drawn).first.wait_for(timeout=WAIT_MS)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{view} is {overflow}px wider than {width}px"
    guard.check()


async def test_the_keyboard_reaches_everything_in_order(world: World, page: Page) -> None:
    await page.goto(f"{world.base}/dashboard")
    await page.locator("#token").wait_for()
    assert await page.evaluate("document.activeElement.id") == "token"
    await page.keyboard.type(world.tokens["clinician"])
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Sign in"
    # A visible focus ring on the focused button.
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    await page.keyboard.press("Enter")
    await page.locator("main h1", has_text="Cohort").wait_for(timeout=WAIT_MS)
    # The view's heading has the focus; before it, the skip link, the views and sign out.
    assert await page.evaluate("document.activeElement.textContent") == "Cohort"
    focused = "(e => e.id || e.textContent.trim())(document.activeElement)"
    backwards = []
    for _ in range(4):
        await page.keyboard.press("Shift+Tab")
        backwards.append(await page.evaluate(focused))
    assert backwards == ["sign-out", "Patients", "Cohort", "Skip to content"]
    for _ in range(4):
        await page.keyboard.press("Tab")
    assert await page.evaluate(focused) == "filter-indication"


# --- the API docs, offline ------------------------------------------------------------------------


async def test_docs_and_redoc_render_every_operation_from_local_files(
    world: World, page: Page
) -> None:
    async with httpx.AsyncClient(base_url=world.base) as client:
        schema = (await client.get("/openapi.json")).json()
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    await page.goto(f"{world.base}/docs")
    await page.locator(".opblock").first.wait_for(timeout=WAIT_MS)
    shown = await page.eval_on_selector_all(
        ".opblock",
        "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent,"
        " b.querySelector('.opblock-summary-path').dataset.path])",
    )
    assert {(method, path) for method, path in shown} == operations
    await page.goto(f"{world.base}/redoc")
    await page.locator("[data-section-id^='operation/']").first.wait_for(timeout=WAIT_MS)
    # An operation with two tags is listed under each: count each operation once.
    sections = await page.eval_on_selector_all(
        "[data-section-id^='operation/']", "found => found.map(s => s.dataset.sectionId)"
    )
    assert len(set(sections)) == len(operations)
