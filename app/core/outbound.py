"""What a URL this service calls out to may be: a webhook receiver, a FHIR rest-hook endpoint
(app/push), a client's key set (app/oauth). One rule for all of them; each use names the
setting that lists the hosts it may reach over plain http. The callers never follow a
redirect either: the URL checked is the URL called."""

from __future__ import annotations

from urllib.parse import urlsplit

# An outbound URL as a schema states it: http(s), a host name or IPv4 address (no IPv6
# literal, no credentials), a port of at most 65535, then anything but a NUL.
_PORT = "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
OUTBOUND_URL_PATTERN = f"^https?://[A-Za-z0-9._~-]+(?::{_PORT})?(?:[/?#][^\\x00]*)?$"


def http_refused(hosts_setting: str) -> str:
    """The one rule about an outbound URL that depends on the deployment's settings, not the
    schema: its message, naming the setting."""
    return f"must be https (http only to the hosts in {hosts_setting})"


def outbound_url_problem(url: str, http_hosts: frozenset[str], hosts_setting: str) -> str | None:
    """Why an outbound URL is refused (None when it is accepted): https, or http to a host in
    ``http_hosts`` (the setting named ``hosts_setting``); an absolute URL with a host and no
    credentials."""
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
        return http_refused(hosts_setting)
    return None
