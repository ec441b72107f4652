from __future__ import annotations

from app.core.errors import AppError


class UnknownPolicy(AppError):
    """A course names a policy this deployment no longer has (its file was removed)."""

    status = 500
    slug = "unknown-policy"
    title = "Unknown frequency policy"
