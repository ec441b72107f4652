"""The policy registry: built-in policies shipped as JSON, plus a clinic's own from a folder.

A clinic adds a policy without code: drop ``<id>.json`` (the fields of ``PolicyParams``) into
the folder named by ``OUTCOMES_POLICY_DIR`` and restart; courses may then name it. Every file is
validated at start-up, and a broken one stops the service instead of being skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from app.analytics.policy import PolicyParams
from app.core.config import get_settings

BUILT_IN = Path(__file__).resolve().parent / "policies"
DEFAULT_POLICY = "standard-v2"  # for new courses; a course keeps the policy it was created with


class PolicyFileError(ValueError):
    pass


def load_policies(folders: Iterable[Path]) -> dict[str, PolicyParams]:
    policies: dict[str, PolicyParams] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            try:
                params = PolicyParams.model_validate(json.loads(path.read_text()))
            except (ValueError, ValidationError) as exc:
                raise PolicyFileError(f"{path}: not a valid policy: {exc}") from exc
            if params.id != path.stem:
                raise PolicyFileError(
                    f"{path}: the file must be named after its id ({params.id}.json)"
                )
            if params.id in policies:
                raise PolicyFileError(f"{path}: policy {params.id} is defined twice")
            policies[params.id] = params
    return policies


@lru_cache(maxsize=8)
def registry(extra_folder: str | None = None) -> dict[str, PolicyParams]:
    folders = [BUILT_IN] + ([Path(extra_folder)] if extra_folder else [])
    return load_policies(folders)


def policies() -> dict[str, PolicyParams]:
    """The policies this deployment offers (built-ins plus ``OUTCOMES_POLICY_DIR``)."""
    return registry(get_settings().policy_dir)
