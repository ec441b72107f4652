"""Dead credentials (access tokens, enrolment codes, refresh tokens, spent assertion ids, old
failure counts), purged while the service runs and by `outcomes tokens purge`."""
