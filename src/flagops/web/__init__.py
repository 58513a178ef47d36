"""Route protection for Python web apps: `flagops.web.asgi` (Starlette, FastAPI), `flagops.web.wsgi` (Flask).

This package imports no web framework: each module imports only its own (the `starlette` and
`flask` extras install them). docs/web.md shows both.
"""

from flagops.web.decide import FlagReader, OrgId, Requirement, Verdict, decide, features

__all__ = ["FlagReader", "OrgId", "Requirement", "Verdict", "decide", "features"]
