"""Route protection for Flask: flag requirements as view decorators, and a `before_request` hook that
attaches the org's enabled flags to `flask.g.features` (docs/web.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Request, abort, current_app, g, request

from flagops.web.decide import FlagReader, OrgId, Requirement, Verdict, decide, features, refusals

OrgResolver = Callable[[Request], OrgId | None]
"""The application's `request -> org id or None` (from a header, the session, flask-login...)."""

View = TypeVar("View", bound=Callable[..., Any])


class FeatureGate:
    """Route protection reading flags through `reader` (a FlagClient) for the org `org_id(request)`
    names: a request without an org gets 401, one whose org lacks the flags `denied_status` (403 by
    default, or 404 to hide the route), and 503 when nothing could ever be read for the org. The
    response is Flask's own for that status (`abort`): it names no flag.

    `FeatureGate(reader, org_id, app=app)` or `gate.init_app(app)` also sets `g.features` before
    every request.
    """

    def __init__(
        self, reader: FlagReader, org_id: OrgResolver, *, denied_status: int = 403, app: Flask | None = None
    ) -> None:
        self.reader = reader
        self.org_id = org_id
        self._refusals = refusals(denied_status)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set `g.features` (a frozenset of flag keys, empty without an org) before each request of
        `app`, like the old service's `attachEnabledFeatures`."""
        app.before_request(self._attach)

    def require_feature(self, key: str) -> Callable[[View], View]:
        """A view decorator: the view needs the flag `key` on for the request's org."""
        return self._decorator(Requirement((key,), every=True))

    def require_all_features(self, *keys: str) -> Callable[[View], View]:
        """A view decorator: the view needs every one of `keys` on."""
        return self._decorator(Requirement(keys, every=True))

    def require_any_feature(self, *keys: str) -> Callable[[View], View]:
        """A view decorator: the view needs at least one of `keys` on."""
        return self._decorator(Requirement(keys, every=False))

    def check(self, requirement: Requirement) -> None:
        """Abort the current request unless its org meets `requirement`."""
        verdict = decide(self.reader, self.org_id(request), requirement)
        if verdict is not Verdict.ALLOW:
            abort(self._refusals[verdict])

    def _decorator(self, requirement: Requirement) -> Callable[[View], View]:
        def decorate(view: View) -> View:
            @functools.wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                self.check(requirement)
                return current_app.ensure_sync(view)(*args, **kwargs)

            return cast(View, guarded)

        return decorate

    def _attach(self) -> None:
        g.features = features(self.reader, self.org_id(request))
