"""Not a test module: the limits tests are tests/core/test_limits.py.

tests/test_observations_fast_path.py (being replaced, and not edited until then) still imports
these helpers from here; this file goes with it. Everything else imports them from tests.support.
"""

from tests.support import Issue, audit_rows, client_of, running

__all__ = ["Issue", "audit_rows", "client_of", "running"]
