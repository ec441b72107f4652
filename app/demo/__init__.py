"""``outcomes demo``: a realistic synthetic cohort, written through the public API.

Two halves. ``build_plan`` (plan.py, from the clinic described in cohort.py) is pure: a seed and
a date give the whole cohort as data (patients, courses, session logs, pain and mobility
values), so its shape is tested without a database. ``load_cohort`` (writer.py) posts that plan
through the HTTP API in-process, so every demo record passes the same validation as a real
client's and the demo keeps working as the service grows; summary.py counts what it did.

Each patient's data is posted in time order (``timeline``): one session at a time, and each
day's observations as one batch. Every one of those requests runs the course's frequency policy
once, so the policy sees the course unfold as it would in the clinic: ``auto`` courses step down
by themselves (history rows with source ``policy``), ``confirm`` courses only recommend, and
after the last post the demo's clinician confirms every other recommendation to change the
frequency; the rest wait for a clinician (on the dashboard, for example).
The policy runs on the server's clock, not the data's: "days since the last change" counts from
the course's start date until the first change, and from the real time of the change after it,
so a replay steps a course down at most once (a later worsening may still put it back up).

Everything is dated strictly before ``today`` (at most yesterday): the API refuses future
timestamps, and a plan that stopped at "now" would change with the time of day.
"""

from app.demo.cohort import ADVERSE_EVENTS, INDICATIONS, INDUCTION_DAYS, MOBILITY_INSTRUMENTS
from app.demo.plan import (
    MAX_PATIENTS,
    PlannedPatient,
    allocate,
    build_plan,
    clamp_to_instrument,
    timeline,
)
from app.demo.writer import DemoError, load_cohort, run_demo, write_patient

__all__ = [
    "ADVERSE_EVENTS",
    "INDICATIONS",
    "INDUCTION_DAYS",
    "MAX_PATIENTS",
    "MOBILITY_INSTRUMENTS",
    "DemoError",
    "PlannedPatient",
    "allocate",
    "build_plan",
    "clamp_to_instrument",
    "load_cohort",
    "run_demo",
    "timeline",
    "write_patient",
]
