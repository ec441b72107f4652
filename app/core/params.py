"""A request's path and query parameters, checked before any database work (the access
dependency runs this first, app/auth/access.py).

Every string must be text the databases can store (``text_problem``, the rule request bodies
follow too); a path parameter is an id of at most 64 characters (a UUID here, a FHIR id at
most) and of the type its route declares, so a malformed id is a 422 before a token is looked
up or a row written, and never reaches the database, not even in the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from app.core.errors import Unprocessable, clean_msg, describe, field_error
from app.core.schemas import text_problem

MAX_ID_LENGTH = 64  # FHIR's limit for a resource id; a UUID has 36 characters


def check_parameters(request: Request) -> None:
    """A 422 naming each path or query parameter that is not acceptable."""
    errors = [*_path_errors(request), *_query_errors(request)]
    if errors:
        raise Unprocessable(describe(errors), errors)


def _path_errors(request: Request) -> Iterator[dict[str, Any]]:
    route = request.scope.get("route")
    declared = _declared_path_types(route) if isinstance(route, APIRoute) else {}
    for name, raw in request.path_params.items():
        value, loc = str(raw), ["path", name]
        if (problem := text_problem(value)) is not None:
            yield field_error(loc, problem)
        elif len(value) > MAX_ID_LENGTH:
            yield field_error(loc, f"must be at most {MAX_ID_LENGTH} characters")
        elif name in declared:
            try:
                _adapter(declared[name]).validate_python(value)
            except ValidationError as exc:
                # As FastAPI would say it after the dependencies: the same declared type.
                for error in exc.errors(include_input=False):
                    yield field_error(loc, clean_msg(error["msg"]))


def _query_errors(request: Request) -> Iterator[dict[str, Any]]:
    for name, value in request.query_params.multi_items():
        if (problem := text_problem(name) or text_problem(value)) is not None:
            yield field_error(["query", name], problem)


def _declared_path_types(route: APIRoute) -> dict[str, Any]:
    """The type each path parameter is declared with, by the endpoint or a dependency."""
    declared: dict[str, Any] = {}
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        for field in dependant.path_params:
            declared.setdefault(field.alias, field.field_info.annotation)
        pending.extend(dependant.dependencies)
    return declared


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)
