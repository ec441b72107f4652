from __future__ import annotations

from app.core.errors import AppError


class Unauthenticated(AppError):
    status = 401
    slug = "unauthenticated"
    title = "Unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="outcomes"'}


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class TokenNotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"
