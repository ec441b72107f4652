"""The pages the service serves to browsers (docs/dashboard.md): the clinician dashboard at
``/dashboard`` and the API docs at ``/docs`` and ``/redoc``.

Everything they load is in ``static/``, shipped inside the package (pyproject.toml's
package-data): the dashboard's own HTML, CSS and JavaScript modules, and the vendored
libraries with their licences (``static/vendor/README.md``). No CDN, no second server, no
build step. The dashboard reads only the public API (/api/v1) with the user's bearer token,
so the access rules and the audit trail apply to it unchanged.
"""

from app.dashboard.router import install_pages

__all__ = ["install_pages"]
