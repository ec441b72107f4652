"""The OpenAPI schema says exactly what the server accepts: schemathesis with every check,
on every operation, then its stateful phase.

schemathesis generates requests from the service's OpenAPI document (its examples; a coverage
pass of boundary and invalid values; then random valid and invalid data) and runs all its
checks on each answer: no 5xx; every status, header, content type and body as documented;
schema-valid requests accepted (2xx, or 401/403/404/409: never a 400 or 422) and schema-invalid
ones refused; no access without the token; `Allow` naming every method of a 405. The one
exemption is BEYOND_A_SCHEMA: a 422 naming only rules no JSON Schema can state (the clock,
other records, two parameters at once), which the fields' descriptions say instead.

The stateful phase then chains schema-valid requests along links: those the document declares
(app/main.py: a created patient's id into the operations that take one, and so on) and those
schemathesis 4 infers from it. Each scenario starts from empty tables (all but the append-only
audit trail) with an admin token of its own, then a new patient with a course: it meets only
what it made, so Hypothesis can run it again and draw the same (Workflow says why it must).

Deterministic (Hypothesis derandomised, no example database) and bounded: MAX_EXAMPLES cases
per operation in the fuzzing phase, STATEFUL_SCENARIOS scenarios of at most STATEFUL_STEPS
calls. It calls the app in-process from an event loop of its own (in a thread), answering as
uvicorn does: the fuzzed app is a separate instance on the test database, whose lifespan (and
engine) runs in that loop. One pytest item per operation, each with a real admin token, from
empty tables.

Failures that belong to another change are listed in KNOWN_FAILURES, each for one operation,
one check and one database, with the reason: the fuzzing reports them but does not fail on
them, and `test_known_failure_still_happens` is an xfail(strict) item per entry, so an entry
must go once its failure is fixed (the item then passes, which fails the run).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck
from hypothesis.stateful import Bundle, MultipleResults, initialize, multiple
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python import asgi
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.analytics.attribution import ambiguity
from app.auth.service import TokenService
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.courses.schemas import FrequencyChangeCreate
from app.main import NOT_BLANK, create_app
from app.oauth import jwks
from app.oauth.service import JWKS_HTTP_REFUSED
from app.observations.errors import InvalidReference
from app.push.schemas import HTTP_REFUSED
from tests.factories import API, create_patient
from tests.support import Issue, assert_problem, delete_rows

MAX_EXAMPLES = 20  # per operation, in the fuzzing phase (the coverage phase adds its own)
STATEFUL_SCENARIOS = 70
STATEFUL_STEPS = 8
# The known failures of some entries depend on the database (tests/conftest.py picks it).
DATABASE = (
    "postgresql"
    if os.environ.get("OUTCOMES_TEST_DATABASE_URL", "").startswith("postgres")
    else "sqlite"
)


@dataclass(frozen=True, slots=True)
class Known:
    """A failure another change fixes: the operation, the schemathesis check, why."""

    operation: str
    check: str
    reason: str
    databases: frozenset[str] = frozenset({"sqlite", "postgresql"})


# Failures that belong to another change, one entry per operation, check and database. None
# today: issue 15's NUL -> 422 (the "failures" change) made the last ones pass.
KNOWN_FAILURES: tuple[Known, ...] = ()


CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # Unknown query parameters are ignored by /api, as HTTP APIs do (cache busters);
            # unknown body fields are 422s, and those are still generated.
            "allow-extra-parameters": False,
        },
        "checks": {"enabled": True},
        # Scenarios chain schema-valid requests: negative data is the fuzzing phase's, and
        # schemathesis 4.32 labels some stateful cases negative by mutations (a missing
        # token, a body of random bytes) that the request it sends does not carry.
        "phases": {"stateful": {"generation": {"mode": "positive"}}},
        "operations": [
            {
                # RFC 6749 answers a well-formed token request whose code, assertion or
                # refresh token is not valid with a 400 (`invalid_grant`, ...) or a 401
                # (`invalid_client`): which one no schema can say.
                "include-path": "/oauth/token",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["200", "400", "401", "429"]}
                },
            }
        ],
    }
)


class ServedApp:
    """The ASGI app schemathesis calls, answering as uvicorn does. The real app is made by a
    fixture (it needs the test database's settings, known only once the session has started).

    Starlette re-raises an exception after answering it with a 500, for the server to log;
    uvicorn logs it and the client has the 500. An exception before any answer is uvicorn's
    plain-text 500. Either way schemathesis checks the answer a client would get."""

    app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "the fuzz_app fixture has not run"
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if scope["type"] != "http":
                raise
            if not started:
                headers = [(b"content-type", b"text/plain; charset=utf-8")]
                await send({"type": "http.response.start", "status": 500, "headers": headers})
                await send({"type": "http.response.body", "body": b"Internal Server Error"})


APP = ServedApp()
# The document does not depend on settings: build it from an app that never starts.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=CONFIG)
schema.app = APP

# Rules no JSON Schema can state: the clock, other records, two parameters at once. The fields'
# descriptions say them; a schema-valid request the server refuses (422) naming only these is
# the server keeping them, not a gap in the schema. Any other refusal of schema-valid data fails.
FUTURE = "must not be more than 5 minutes in the future"
BEYOND_A_SCHEMA: frozenset[tuple[str, str, str]] = frozenset(
    {
        # the clock
        ("body", "recorded_at", FUTURE),
        ("body", "performed_at", FUTURE),
        ("body", "birth_date", "must not be in the future"),
        ("body", "start_date", "must be within a year from today"),
        # other records
        ("body", "patient_id", "no patient with this id"),
        ("body", "course_id", InvalidReference.COURSE_MSG),
        ("body", "session_id", InvalidReference.SESSION_MSG),
        ("body", "session_id", InvalidReference.SESSION_COURSE_MSG),
        *(("body", "course_id", ambiguity(count)) for count in range(2, 10)),
        ("body", "performed_at", "is before the course's start_date"),
        # two parameters at once
        ("query", "until", "must be later than since"),
        # the deployment's settings (OUTCOMES_WEBHOOK_ALLOWED_HOSTS,
        # OUTCOMES_OAUTH_JWKS_ALLOWED_HOSTS)
        ("body", "url", HTTP_REFUSED),
        ("body", "endpoint", HTTP_REFUSED),
        ("body", "jwks_url", JWKS_HTTP_REFUSED),
        # keys: real ones (a point on the curve, an odd exponent less than the modulus, a
        # modulus without leading zeros), and a kid once in the set (app/oauth/jwks.py)
        ("body", "y", jwks.NOT_ON_THE_CURVE),
        ("body", "n", jwks.NOT_AN_RSA_KEY),
        ("body", "n", jwks.RSA_TOO_SHORT),
        ("body", "kid", jwks.KID_TAKEN),
    }
)


@schema.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Failure,
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> bool:
    """Keep every failure but a refusal of schema-valid data for the rules above alone."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code not in (400, 422):
        return True
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":  # FHIR: "body.a.b: msg" diagnostics
        errors = []
        for issue in body.get("issue", []):
            loc, _, msg = issue.get("diagnostics", "").partition(": ")
            errors.append({"loc": loc.split("."), "msg": msg})
    elif response.status_code == 422:
        errors = body.get("errors") or [{"loc": [], "msg": ""}]
    else:
        return True
    return not all(
        (*map(str, error["loc"][:1] + error["loc"][-1:]), error["msg"]) in BEYOND_A_SCHEMA
        for error in errors
    )


@dataclass
class Seen:
    """What this session's fuzzing met: the operations it ran, the known failures it saw."""

    operations: set[str] = field(default_factory=set)
    known: set[tuple[str, str]] = field(default_factory=set)
    stateful_successes: set[str] = field(default_factory=set)  # answered 2xx in scenarios


SEEN = Seen()
KNOWN = {(k.operation, k.check): k for k in KNOWN_FAILURES if DATABASE in k.databases}


def _is_known(failure: Failure) -> bool:
    for check in type(failure).checks:
        if (failure.operation, check) in KNOWN:
            SEEN.known.add((failure.operation or "", check))
            return True
    return False


def without_known_failures(group: FailureGroup) -> None:
    """Raise ``group`` less its known failures (nothing when all of them are known)."""
    unexpected = [failure for failure in group.exceptions if not _is_known(failure)]
    if len(unexpected) == len(group.exceptions):
        raise group
    if unexpected:
        raise FailureGroup(unexpected, group.message) from None


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings) -> Iterator[None]:
    # Without the token endpoint's bound on failures per address (app/oauth/throttle.py):
    # nearly every generated token request is refused, all from one address, and the bound
    # would soon answer them all with 429 before their grant is tried.
    APP.app = create_app(settings.model_copy(update={"oauth_failure_limit": 0}))
    try:
        yield
    finally:
        asgi.shutdown_lifespans()  # runs the app's shutdown (engine disposal) in its own loop
        APP.app = None


@pytest.fixture
async def admin_token(issue_token: Issue) -> str:
    # `issue_token` uses the session's engine: the tables are emptied after each operation.
    return await issue_token("admin")


@schema.parametrize()
# The admin token is meant to last for every example of an operation.
@hypothesis.settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_survives_fuzzing(
    case: schemathesis.Case[Any], fuzz_app: None, admin_token: str
) -> None:
    SEEN.operations.add(case.operation.label)
    try:
        case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"})
    except FailureGroup as group:
        without_known_failures(group)


CREATE_PATIENT = schema["/api/v1/patients"]["POST"]
CREATE_COURSE = schema["/api/v1/patients/{patient_id}/courses"]["POST"]


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Scenarios along the schema's links (app/main.py's, and those schemathesis infers), each
    from empty tables with an admin token of its own (`start_afresh`, set by the test).

    A scenario must not meet what an earlier one left. Hypothesis draws each step from the
    answers before it (which links a response offers, whether a list has an item to follow)
    and checks that a scenario run twice draws the same: a patient's `external_id` drawn again
    is a 409 the second time, so no course follows, and Hypothesis reports
    FlakyStrategyDefinition instead of the scenario (or of its failure, when it replays one to
    report it). The audit trail is append-only and stays: no link starts from it."""

    start_afresh: Callable[[], str] | None = None  # a partial: not bound as a method
    token: str = ""

    def setup(self) -> None:
        """Runs before each scenario (schemathesis's APIStateMachine calls it)."""
        assert self.start_afresh is not None, "the test sets Workflow.start_afresh"
        self.token = self.start_afresh()

    @initialize(
        target=Bundle("catch_all"),
        patient=CREATE_PATIENT.as_strategy(GenerationMode.POSITIVE),
    )
    def a_patient_with_a_course(self, patient: schemathesis.Case[Any]) -> MultipleResults[Any]:
        """Every scenario starts from a new patient (generated) with a course (a plain one),
        whose links lead on to the rest. schemathesis would not start there by itself: it
        reads `external_id` as a reference to a resource no operation creates, and a course
        body drawn at random is rarely one the server takes (a start date within a year)."""
        created = self._run(patient)
        if created.response.status_code != 201:
            return multiple(created)
        course = CREATE_COURSE.Case(
            path_parameters={"patient_id": created.response.json()["id"]},
            body={
                "indication": "lumbar disc herniation",
                "region": "lumbar",
                "technique": "paravertebral",
                "start_date": (datetime.now(UTC) - timedelta(days=28)).date().isoformat(),
            },
        )
        return multiple(created, self._run(course))

    def _run(self, case: schemathesis.Case[Any]) -> StepOutput:
        self.recorder.record_case(case=case)
        output: StepOutput = self.step(StepInput.initial(case))
        return output

    def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
        SEEN.operations.add(case.operation.label)
        return {"headers": {"Authorization": f"Bearer {self.token}"}}

    def after_call(self, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
        super().after_call(response, case)
        if 200 <= response.status_code < 300:
            SEEN.stateful_successes.add(case.operation.label)

    def validate_response(
        self,
        response: schemathesis.Response,
        case: schemathesis.Case[Any],
        additional_checks: Any = None,
        **kwargs: Any,
    ) -> None:
        # As `call_and_validate` does: the checks learn which headers the caller added (the
        # token), so a case generated without them is not judged as if it had been sent so.
        try:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                headers=self.get_call_kwargs(case)["headers"],
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )
        except FailureGroup as group:
            without_known_failures(group)


STATEFUL_SETTINGS = hypothesis.settings(
    max_examples=STATEFUL_SCENARIOS,
    stateful_step_count=STATEFUL_STEPS,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[hypothesis.Phase.generate],
    suppress_health_check=list(HealthCheck),
)


# Reached only through links: their ids come from an earlier step's answer.
LINKED = {
    "GET /api/v1/patients/{patient_id}",
    "GET /api/v1/patients/{patient_id}/summary",
    "GET /api/v1/courses/{course_id}",
    "GET /api/v1/courses/{course_id}/recommendation",
    "GET /fhir/R4/Patient/{patient_id}/$everything",
}


async def _empty_with_an_admin(engine: AsyncEngine) -> str:
    await delete_rows(engine)
    async with create_sessionmaker(engine)() as session, session.begin():
        issued = await TokenService(session).issue("admin", None, None)
    return issued.token


@pytest.fixture
def start_afresh(settings: Settings) -> Iterator[Callable[[], str]]:
    """Empties the tables and issues an admin token, for a synchronous caller (the state
    machine's setup): in an event loop of its own, in a thread, with an engine of its own."""
    with start_blocking_portal() as portal:
        engine = create_engine(settings)
        try:
            yield partial(portal.call, _empty_with_an_admin, engine)
        finally:
            portal.call(engine.dispose)


def test_operations_chained_along_the_schemas_links(
    fuzz_app: None, start_afresh: Callable[[], str]
) -> None:
    Workflow.start_afresh = start_afresh
    try:
        Workflow.run(settings=STATEFUL_SETTINGS)
    finally:
        Workflow.start_afresh = None
    # The scenarios followed links: records made in one step were read in the next.
    assert SEEN.stateful_successes >= LINKED, sorted(LINKED - SEEN.stateful_successes)


@pytest.mark.parametrize(
    "known",
    [
        pytest.param(
            known,
            id=f"{known.operation} {known.check}",
            marks=pytest.mark.xfail(strict=True, reason=known.reason),
        )
        for known in KNOWN.values()
    ],
)
def test_known_failure_still_happens(known: Known) -> None:
    """Runs after the fuzzing above (pytest keeps the file's order). Passing here means the
    failure is gone: delete its KNOWN_FAILURES entry."""
    if known.operation not in SEEN.operations:
        pytest.skip(f"{known.operation} was not fuzzed in this run")
    assert (known.operation, known.check) not in SEEN.known, known.reason


# --- the document itself ----------------------------------------------------------------------

DOCUMENT = create_app(Settings()).openapi()


def _request_strings(node: Any, components: dict[str, Any], seen: set[str]) -> Iterator[Any]:
    """Every string schema a request may carry (bodies, query and path parameters)."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                yield from _request_strings(components[name], components, seen)
            return
        if node.get("type") == "string":
            yield node
        for key, value in node.items():
            if key not in ("description", "title", "default", "examples", "enum", "const"):
                yield from _request_strings(value, components, seen)
    elif isinstance(node, list):
        for item in node:
            yield from _request_strings(item, components, seen)


def test_no_request_string_admits_a_nul() -> None:
    components = DOCUMENT["components"]["schemas"]
    seen: set[str] = set()
    strings: list[Any] = []
    for item in DOCUMENT["paths"].values():
        for operation in item.values():
            parameters = [p for p in operation.get("parameters", []) if p["in"] != "header"]
            strings += _request_strings(parameters, components, seen)
            strings += _request_strings(operation.get("requestBody", {}), components, seen)
    assert len(strings) > 50
    for string in strings:
        if "format" in string or "enum" in string or "const" in string:
            continue
        assert "pattern" in string, string
        assert not re.search(string["pattern"], "a\x00b"), string


def test_a_required_text_is_not_blank_as_the_server_reads_it() -> None:
    """NOT_BLANK admits a string exactly when pydantic, which strips surrounding whitespace,
    finds something left (what counts as whitespace differs between Python's str.strip and
    pydantic's, so the pattern follows pydantic's)."""
    reason = DOCUMENT["components"]["schemas"]["FrequencyChangeCreate"]["properties"]["reason"]
    assert reason["pattern"] == NOT_BLANK
    suspects = {chr(c) for c in range(0x3100) if chr(c).isspace() or not chr(c).isprintable()}
    for char in sorted(suspects | {"\u180e", "\u200b", "\ufeff", "\u3000"}):
        if char == "\x00":
            continue
        try:
            FrequencyChangeCreate(sessions_per_week=2, reason=char)
            accepted = True
        except ValidationError:
            accepted = False
        assert (re.search(NOT_BLANK, char) is not None) == accepted, repr(char)


def test_created_resources_link_to_the_operations_that_take_their_ids() -> None:
    created = DOCUMENT["paths"]["/api/v1/patients"]["post"]["responses"]["201"]
    targets = {link["operationId"] for link in created["links"].values()}
    operation_ids = {
        operation["operationId"]: (method, path)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
    }
    assert {operation_ids[target] for target in targets} >= {
        ("get", "/api/v1/patients/{patient_id}"),
        ("post", "/api/v1/patients/{patient_id}/courses"),
        ("get", "/fhir/R4/Patient/{patient_id}/$everything"),
    }


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("POST", "/patients", None, {"birth_date": 0}),
        ("POST", "/patients", None, {"birth_date": "86400"}),
        ("GET", "/cohort/summary", {"until": "0"}, None),
        ("GET", "/audit", {"since": "0.5"}, None),
        ("GET", "/patients/{patient_id}/observations", {"since": "1700000000"}, None),
        (
            "POST",
            "/patients/{patient_id}/observations",
            None,
            {"instrument": "pain-nrs", "value": 5, "recorded_at": 1700000000},
        ),
    ],
    ids=["birth_date-number", "birth_date-string", "until", "since", "obs-since", "recorded_at"],
)
async def test_unix_times_are_not_dates(
    admin: httpx.AsyncClient,
    method: str,
    path: str,
    params: dict[str, str] | None,
    body: dict[str, object] | None,
) -> None:
    patient = await create_patient(admin)
    url = API + path.format(patient_id=patient["id"])
    assert_problem(await admin.request(method, url, params=params, json=body), 422)
