"""``Idempotency-Key`` on POSTs under ``/api/`` (after the IETF httpapi draft).

A client that may send a POST twice (a retry after a timeout, an offline sync replayed)
sends the same ``Idempotency-Key`` both times; the write happens once.

- Same key, same request (method, path, query and body, byte for byte), same token: the
  first response is replayed (its status, body and content type) with
  ``Idempotent-Replayed: true``, and nothing is written again.
- Same key, different request: **422** problem at ``["header", "Idempotency-Key"]``.
- Same key while the first request has not finished: **409** problem; retry shortly.
  A key whose first request was applied but whose response was never stored (the process
  stopped between the two) stays a 409 that says so: read the resource to see the result.
- Keys belong to the token that sent them: the same key from another token is another key,
  so no client can ever be handed another's response.
- Only successes (2xx) are stored. A request that fails (4xx, 5xx) writes nothing, key
  included: the client may retry with the same key, with a corrected body or not.
- A key is 1 to 255 printable ASCII characters, bare (``abc``) or as a structured-field
  string (``"abc"``, the draft's form; the same key). Anything else is a 422.
- Without a valid token the header is ignored and the request gets its usual 401.
- Keys are kept ``OUTCOMES_IDEMPOTENCY_RETENTION_HOURS`` (24 by default, never fewer), then
  purged every ``OUTCOMES_IDEMPOTENCY_PURGE_SECONDS``; after that the key is new again.

How the write happens once: the middleware (``middleware.py``) looks the key up. If it is new
it runs the request, whose own transaction inserts the key as ``processing`` just before it
commits (``store_key_with_write``): the key and the write commit together or not at all. Two
requests racing with one key both find it absent, but only one INSERT of the (token, key)
primary key can commit; the other's transaction (its write with it) rolls back and it
answers 409. Once the winner has committed, its response is stored (``completed``) before
it is sent.
"""
