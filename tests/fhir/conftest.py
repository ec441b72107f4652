from __future__ import annotations

import httpx
import pytest

from tests.fhir.support import RoleClient
from tests.support import Issue, MakeClient


@pytest.fixture
def as_role(make_client: MakeClient, issue_token: Issue) -> RoleClient:
    """A client holding a fresh token of ``role`` (bound to ``patient_id`` for patients)."""

    async def make(role: str, patient_id: str | None = None) -> httpx.AsyncClient:
        return make_client(await issue_token(role, patient_id))

    return make


@pytest.fixture
async def ehr(as_role: RoleClient) -> httpx.AsyncClient:
    """An EHR integration: the role FHIR is for."""
    return await as_role("integration")
