"""Helpers for the dashboard's browser tests and its screenshot script: Chromium, a guard on
every page (no request leaves 127.0.0.1, no Content-Security-Policy violation, no script
error), signing in, and the courses the tests look at, created through the public API."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from tests.factories import API, create_course, create_patient, create_session

CHROMIUM = Path(os.environ.get("OUTCOMES_TEST_CHROMIUM", "/usr/bin/chromium"))
# Set by .ci/run: there, a missing browser fails the run instead of skipping these tests.
REQUIRE_BROWSER = os.environ.get("OUTCOMES_TEST_REQUIRE_BROWSER") == "1"
# The longest a page may take to show what a test waits for: generous, for a loaded machine
# (Swagger UI parses 1.7 MB of script, then renders every operation).
WAIT_MS = 45_000


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does it in CI)"
    return None


def skip_without_browser() -> None:
    reason = browser_missing()
    if reason is None:
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"OUTCOMES_TEST_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, driven by Playwright (no browser download)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Guard:
    """What a browser context did: every URL it asked for, the requests refused for leaving
    127.0.0.1, CSP violations and uncaught script errors."""

    requests: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Known, harmless violations: ReDoc 2 shows its logo from cdn.redoc.ly, which the /redoc
    # page's policy blocks (no request is made; ReDoc then hides the image).
    tolerated: tuple[str, ...] = ("https://cdn.redoc.ly/redoc/logo-mini.svg",)

    def check(self) -> None:
        assert self.outside == [], f"requests left 127.0.0.1: {self.outside}"
        violations = [v for v in self.csp_violations if not any(t in v for t in self.tolerated)]
        assert violations == [], f"Content-Security-Policy violations: {violations}"
        assert self.errors == [], f"script errors: {self.errors}"


@asynccontextmanager
async def guarded_context(
    browser: Browser, *, width: int = 1280, height: int = 800
) -> AsyncIterator[tuple[BrowserContext, Guard]]:
    """A fresh context (its own sessionStorage) whose requests must stay on 127.0.0.1: every
    request is recorded, one to any other host is refused and fails the test."""
    guard = Guard()
    context = await browser.new_context(viewport={"width": width, "height": height})

    async def route(route: Route) -> None:
        url = route.request.url
        guard.requests.append(url)
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            guard.outside.append(url)
            await route.abort()

    await context.route("**/*", route)

    def watch(page: Page) -> None:
        page.on(
            "console",
            lambda message: (
                guard.csp_violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        page.on("pageerror", lambda error: guard.errors.append(str(error)))

    context.on("page", watch)
    try:
        yield context, guard
    finally:
        await context.close()


async def sign_in(page: Page, base_url: str, token: str) -> None:
    """Open the dashboard and sign in; returns once the cohort view is drawn."""
    await page.goto(f"{base_url}/dashboard")
    await page.fill("#token", token)
    await page.press("#token", "Enter")
    await page.wait_for_selector("#nav:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_selector("main h1:text-is('Cohort')", timeout=WAIT_MS)


async def open_signed_in(page: Page, base_url: str, token: str, role: str, view: str) -> None:
    """Open a view of the dashboard as if signed in with ``token`` (a ``role`` token): the
    token is put in the tab's sessionStorage before the page loads, as signing in would."""
    origin = json.dumps(base_url)
    await page.add_init_script(
        f"if (location.origin === {origin}) {{"
        f" sessionStorage.setItem('outcomes.dashboard.token', {json.dumps(token)});"
        f" sessionStorage.setItem('outcomes.dashboard.role', {json.dumps(role)}); }}"
    )
    await page.goto(f"{base_url}/dashboard{view}")
    await page.locator("main h1").wait_for(timeout=WAIT_MS)


# --- the courses the tests look at -----------------------------------------------------------


def _at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour), UTC).isoformat()


async def _observe(
    client: httpx.AsyncClient, patient_id: str, instrument: str, value: float, at: str, **more: Any
) -> None:
    body = {"instrument": instrument, "value": value, "recorded_at": at} | more
    response = await client.post(f"{API}/patients/{patient_id}/observations", json=body)
    assert response.status_code == 201, response.text


async def confirm_course_awaiting_a_decrease(
    client: httpx.AsyncClient, *, name: str = "Ana Confirm"
) -> tuple[str, str]:
    """(patient id, course id) of a `confirm` course whose policy recommends 3 → 2 a week
    (rule response-step-down): pain NRS 8 at baseline, 4 now, started 10 days ago.

    The sessions' pain_before are values of the course by themselves (no observation names
    those sessions), as docs/analytics.md says: the dashboard must count them too."""
    today = datetime.now(UTC).date()
    start = today - timedelta(days=10)
    patient = await create_patient(client, name=name, external_id=f"DASH-{name}")
    course = await create_course(
        client, patient["id"], start_date=start.isoformat(), adjustment="confirm"
    )
    pid, cid = patient["id"], course["id"]
    await _observe(client, pid, "pain-nrs", 8, _at(start, 8))
    await _observe(client, pid, "odi", 40, _at(start, 8))
    for days, pain_before in ((0, 8), (2, 6), (4, 5)):
        performed_at = _at(start + timedelta(days=days), 9)
        await create_session(client, cid, performed_at=performed_at, pain_before=pain_before)
    for days in (5, 7, 9):
        await _observe(client, pid, "pain-nrs", 4, _at(start + timedelta(days=days), 10))
    await _observe(client, pid, "odi", 26, _at(today - timedelta(days=1), 10), course_id=cid)
    rec = (await client.get(f"{API}/courses/{cid}/recommendation")).json()
    assert (rec["action"], rec["recommended_sessions_per_week"]) == ("decrease", 2), rec
    return pid, cid


async def course_with_an_adverse_event(client: httpx.AsyncClient) -> tuple[str, str]:
    """(patient id, course id) of an auto course whose second of three sessions recorded an
    adverse event."""
    today = datetime.now(UTC).date()
    start = today - timedelta(days=6)
    patient = await create_patient(client, name="Ben Adverse", external_id="DASH-adverse")
    course = await create_course(client, patient["id"], start_date=start.isoformat())
    pid, cid = patient["id"], course["id"]
    for days, events in ((0, []), (2, ["local haematoma"]), (4, [])):
        performed_at = _at(start + timedelta(days=days), 9)
        await create_session(
            client, cid, performed_at=performed_at, pain_before=7, adverse_events=events
        )
    await _observe(client, pid, "pain-nrs", 5, _at(today - timedelta(days=1), 10))
    return pid, cid
