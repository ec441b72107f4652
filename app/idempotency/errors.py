from __future__ import annotations

from app.core.errors import Conflict, Unprocessable, field_error

HEADER_LOC = ["header", "Idempotency-Key"]


class InvalidKey(Unprocessable):
    msg = "must be one header of 1 to 255 printable ASCII characters"

    def __init__(self) -> None:
        super().__init__(f"Idempotency-Key {self.msg}.", [field_error(HEADER_LOC, self.msg)])


class KeyReused(Unprocessable):
    """The key was first sent with another request (method, path, query or body)."""

    slug = "idempotency-key-reused"
    msg = "this key was used for a different request"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used for a different request; "
            "send a new key for a new request.",
            [field_error(HEADER_LOC, self.msg)],
        )


class KeyInUse(Conflict):
    """A request with this key has not finished storing its response."""

    slug = "idempotency-key-in-use"
    msg = "a request with this key is still in progress"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail
            or "A request with this Idempotency-Key is still in progress; retry shortly "
            "to receive its response.",
            [field_error(HEADER_LOC, self.msg)],
        )


class ResponseNotKept(Conflict):
    """The request was applied, but its response carried a secret shown only once."""

    slug = "idempotency-response-not-kept"
    msg = "the request with this key was applied; its response is not kept"

    def __init__(self) -> None:
        super().__init__(
            "The request with this Idempotency-Key was applied, but its response held a "
            "secret that is shown only once and is never stored. If it was lost, revoke that "
            "token (or let that enrolment code expire) and make a new one with a new key.",
            [field_error(HEADER_LOC, self.msg)],
        )
