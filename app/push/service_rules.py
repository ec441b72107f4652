"""What a receiver URL may be (webhooks and FHIR rest-hook endpoints alike)."""

from __future__ import annotations

from urllib.parse import urlsplit

# A receiver URL as the schema states it: http(s), a host name or IPv4 address (no IPv6
# literal, no credentials), a port of at most 65535, then anything but a NUL.
_PORT = "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
RECEIVER_URL_PATTERN = f"^https?://[A-Za-z0-9._~-]+(?::{_PORT})?(?:[/?#][^\\x00]*)?$"
# The one rule about a receiver URL that depends on the deployment's settings, not the schema.
HTTP_REFUSED = "must be https (http only to the hosts in OUTCOMES_WEBHOOK_ALLOWED_HOSTS)"


def receiver_url_problem(url: str, http_hosts: frozenset[str]) -> str | None:
    """Why a receiver URL is refused (None when it is accepted): https, or http to an allowed
    host; an absolute URL with a host and no credentials."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        return "must be an absolute http(s) URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.scheme == "http" and host not in http_hosts:
        return HTTP_REFUSED
    return None
