"""The dashboard's screenshots in docs/dashboard/, made from the demo cohort:

    make screenshots            # or: python -m tests.dashboard.screenshots [--today YYYY-MM-DD]

Loads the demo cohort (`outcomes demo`, seed 42) into a new SQLite file in a temporary folder,
serves the app on 127.0.0.1 and drives Chromium through each view as a clinician, the same
way the browser tests do (tests/dashboard/support.py): no request leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from app.auth.service import TokenService
from app.core.config import Settings
from app.core.migrations import upgrade
from app.core.state import app_state
from app.demo import build_plan, load_cohort
from app.main import create_app
from tests.dashboard.support import WAIT_MS, chromium, guarded_context, open_signed_in
from tests.support import ROOT, serving

OUT = ROOT / "docs" / "dashboard"
WIDTH = 1280


async def _clinician_token(settings: Settings) -> str:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        app_state(app).sessionmaker() as session,
        session.begin(),
    ):
        return (await TokenService(session).issue("clinician", expires_in_days=1)).token


async def shoot(out: Path, today: date) -> list[Path]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{folder}/demo.db")
        await asyncio.to_thread(upgrade, settings.database_url)
        summary = await load_cohort(settings, build_plan(60, 42, today))
        assert summary is not None
        # A confirm course whose change waits for a clinician: the course view's button.
        waiting = summary.pending_changes[0] if summary.pending_changes else "DEMO-0001"
        token = await _clinician_token(settings)
        with serving(create_app(settings)) as base:
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {token}"}
            ) as api:
                found = await api.get("/api/v1/patients", params={"external_id": waiting})
                patient_id = found.json()["items"][0]["id"]
            return await _views(base, token, patient_id, out)


async def _views(base: str, token: str, patient_id: str, out: Path) -> list[Path]:
    written = []
    async with chromium() as browser:
        async with guarded_context(browser, width=WIDTH, height=720) as (context, guard):
            page = await context.new_page()
            await page.goto(f"{base}/dashboard")
            await page.locator("#token").wait_for(timeout=WAIT_MS)
            written.append(out / "signin.png")
            await page.screenshot(path=written[-1])
        guard.check()
        views = [
            ("cohort.png", "#/cohort", "[data-chart=improvement] canvas", 1100),
            ("patients.png", "#/patients", "[data-testid=patients]", 1000),
            ("course.png", f"#/patients/{patient_id}", "[data-chart=frequency] canvas", 1500),
        ]
        for name, view, drawn, height in views:
            async with guarded_context(browser, width=WIDTH, height=height) as (context, guard):
                page = await context.new_page()
                await open_signed_in(page, base, token, "clinician", view)
                await page.locator(drawn).first.wait_for(timeout=WAIT_MS)
                await page.wait_for_load_state("networkidle")
                written.append(out / name)
                await page.screenshot(path=written[-1])
            guard.check()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--today", type=date.fromisoformat, default=datetime.now(UTC).date(), metavar="YYYY-MM-DD"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(shoot(args.out, args.today)):
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
