"""SMART scopes on plain strings (app/auth/scopes.py): reading them, narrowing a request to a
registration, what a token's scopes grant, and what a route needs."""

from __future__ import annotations

import re

import pytest

from app.auth import scopes
from app.auth.scopes import (
    RESOURCE_TYPES,
    InvalidScope,
    Needs,
    check_registered,
    missing,
    narrow,
    needs,
    parse,
    parse_word,
    registered_scope_pattern,
)
from app.fhir.export import EXPORT_TYPES


def test_the_types_are_the_ones_fhir_serves() -> None:
    assert set(RESOURCE_TYPES) == set(EXPORT_TYPES)


@pytest.mark.parametrize(
    ("word", "context", "resource_type", "permissions"),
    [
        ("system/*.rs", "system", "*", "rs"),
        ("system/Observation.rs", "system", "Observation", "rs"),
        ("patient/Observation.c", "patient", "Observation", "c"),
        ("user/CarePlan.cruds", "user", "CarePlan", "cruds"),
        ("system/Patient.s", "system", "Patient", "s"),
        # v1 forms
        ("system/Observation.read", "system", "Observation", "rs"),
        ("system/*.write", "system", "*", "cud"),
        ("patient/*.*", "patient", "*", "cruds"),
    ],
)
def test_resource_scopes(word: str, context: str, resource_type: str, permissions: str) -> None:
    scope = parse_word(word)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions, scope.text) == (
        context,
        resource_type,
        permissions,
        word,
    )


@pytest.mark.parametrize(
    "word", ["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access"]
)
def test_words_that_carry_no_access_are_tolerated(word: str) -> None:
    assert parse_word(word) is None
    assert parse(f"{word} system/*.rs")[0].text == "system/*.rs"


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("system/Practitioner.rs", "no Practitioner"),
        ("system/Observation.sr", "in order"),
        ("system/Observation.rr", "in order"),
        ("system/Observation.x", "in order"),
        ("system/Observation.rs?category=vital-signs", "granular"),
        ("group/Observation.rs", "not a SMART scope"),
        ("system/Observation", "not a SMART scope"),
        ("Observation.rs", "not a SMART scope"),
        ("admin", "not a SMART scope"),
    ],
)
def test_other_words_are_refused_saying_why(word: str, reason: str) -> None:
    with pytest.raises(InvalidScope, match=re.escape(reason)):
        parse_word(word)


@pytest.mark.parametrize(
    ("requested", "registered", "granted"),
    [
        ("system/*.rs", "system/*.rs", "system/*.rs"),
        # a narrower request is granted as asked, in the form asked
        ("system/Observation.rs", "system/*.rs", "system/Observation.rs"),
        ("system/Observation.read", "system/*.rs", "system/Observation.read"),
        ("system/Observation.r", "system/*.rs", "system/Observation.r"),
        # more than registered: cut down, never more
        ("system/*.cruds", "system/*.rs", "system/*.rs"),
        ("system/*.*", "system/Observation.rs", "system/Observation.rs"),
        ("system/*.rs", "system/Observation.rs system/Patient.r",
         "system/Observation.rs system/Patient.r"),
        ("system/Observation.cruds", "system/*.read", "system/Observation.rs"),
        # words without access are dropped; requested scopes outside the registration too
        ("launch/patient openid system/*.rs", "system/*.rs", "system/*.rs"),
        ("system/Observation.rs system/CarePlan.rs", "system/Observation.rs",
         "system/Observation.rs"),
        ("patient/*.rs system/Patient.r", "system/*.rs", "system/Patient.r"),
        # one granted scope covering another leaves one
        ("system/Observation.rs system/*.rs", "system/*.rs", "system/*.rs"),
        ("system/*.rs system/Observation.r", "system/*.rs", "system/*.rs"),
    ],
)  # fmt: skip
def test_a_request_is_narrowed_to_the_registration(
    requested: str, registered: str, granted: str
) -> None:
    assert narrow(requested, registered) == granted


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        ("system/Patient.rs", "system/Observation.rs"),  # nothing in common
        ("system/*.c", "system/*.rs"),
        ("patient/*.rs", "system/*.rs"),  # another context
        ("openid launch/patient", "system/*.rs"),  # nothing that grants access
        ("", "system/*.rs"),
        ("system/Practitioner.rs system/*.rs", "system/*.rs"),  # a type this server has not
    ],
)
def test_nothing_left_or_a_bad_word_is_invalid(requested: str, registered: str) -> None:
    with pytest.raises(InvalidScope):
        narrow(requested, registered)


def test_what_a_token_grants_depends_on_its_context() -> None:
    own = "patient/*.rs patient/Observation.c"  # an enrolled patient app's scope
    assert missing(own, patient_bound=True, wanted={("Observation", "c"), ("Patient", "r")}) is None
    assert missing(own, patient_bound=True, wanted={("CarePlan", "u")}) == "CarePlan.u"
    # a patient/ scope grants nothing to a token bound to no patient, and system/ the reverse
    assert missing(own, patient_bound=False, wanted={("Patient", "r")}) == "Patient.r"
    assert missing("system/*.rs", patient_bound=True, wanted={("Patient", "r")}) == "Patient.r"
    system = "system/Observation.rs"
    assert missing(system, patient_bound=False, wanted={("Observation", "s")}) is None
    assert missing(system, patient_bound=False, wanted={("Patient", "r")}) == "Patient.r"
    assert missing("user/*.read", patient_bound=False, wanted={("CarePlan", "r")}) is None
    assert missing("", patient_bound=False, wanted=set()) is None
    # a word that does not parse grants nothing, the others still do
    assert missing("nonsense system/*.r", patient_bound=False, wanted={("Patient", "r")}) is None


def test_registered_scopes_are_system_scopes_of_this_servers_types() -> None:
    pattern = re.compile(registered_scope_pattern())
    good = [
        "system/*.rs",
        "system/Observation.read system/Patient.r",
        "system/*.*",
        "system/*.cruds",
    ]
    bad = [
        "patient/*.rs", "system/Practitioner.rs", "system/*.sr", "openid", "",
        "system/*.rs  system/Patient.r", " system/*.rs", "system/*.rs?x=1",
    ]  # fmt: skip
    for scope in good:
        assert pattern.fullmatch(scope), scope
        check_registered(scope)
    for scope in bad:
        assert not pattern.fullmatch(scope), scope
        with pytest.raises(InvalidScope):
            check_registered(scope)


def test_what_a_route_needs() -> None:
    assert needs("Observation.s", "CarePlan.r").wanted([]) == {
        ("Observation", "s"),
        ("CarePlan", "r"),
    }
    export = Needs(types_named_by="_type")
    assert export.wanted([]) == {(t, "r") for t in RESOURCE_TYPES}
    assert export.wanted(["Observation,Patient"]) == {("Observation", "r"), ("Patient", "r")}
    assert export.wanted(["Nonsense"]) == {(t, "r") for t in RESOURCE_TYPES}  # the strictest
    assert scopes.NO_DATA.wanted([]) == frozenset()
    assert str(scopes.ADMINISTRATION) == "administration (no scope)"
    with pytest.raises(ValueError, match="Practitioner"):
        needs("Practitioner.r")
    with pytest.raises(ValueError, match="permission"):
        needs("Patient.x")
