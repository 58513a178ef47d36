"""Route protection for Starlette and FastAPI: flag requirements as dependencies or decorators, and a
middleware that attaches the org's enabled flags to `request.state.features` (docs/web.md).

Flag reads (and the application's org resolver) run in Starlette's threadpool, never on the event
loop: a FlagClient answers from memory in microseconds, but the first call for an org, or the first
after its ttl, reads the database and may wait up to the client's `timeout`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, overload

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from flagops.web.decide import FlagReader, OrgId, Requirement, Verdict, decide, features, refusals

OrgResolver = Callable[[Request], OrgId | None]
"""The application's `request -> org id or None` (from a header, the session, `request.user`...)."""

Endpoint = Callable[..., Any]


class FeatureGate:
    """Route protection reading flags through `reader` (a FlagClient) for the org `org_id(request)`
    names: a request without an org gets 401, one whose org lacks the flags `denied_status` (403 by
    default, or 404 to hide the route), and 503 when nothing could ever be read for the org. The
    response is the framework's own for that status: it names no flag."""

    def __init__(self, reader: FlagReader, org_id: OrgResolver, *, denied_status: int = 403) -> None:
        self.reader = reader
        self.org_id = org_id
        self._refusals = refusals(denied_status)

    def require_feature(self, key: str) -> FeatureRequirement:
        """The route needs the flag `key` on for the request's org."""
        return FeatureRequirement(self, Requirement((key,), every=True))

    def require_all_features(self, *keys: str) -> FeatureRequirement:
        """The route needs every one of `keys` on."""
        return FeatureRequirement(self, Requirement(keys, every=True))

    def require_any_feature(self, *keys: str) -> FeatureRequirement:
        """The route needs at least one of `keys` on."""
        return FeatureRequirement(self, Requirement(keys, every=False))

    def check(self, request: Request, requirement: Requirement) -> None:
        """Raise HTTPException unless the request's org meets `requirement` (blocking: call it in a
        thread, as FastAPI does with a sync dependency)."""
        verdict = decide(self.reader, self.org_id(request), requirement)
        if verdict is not Verdict.ALLOW:
            raise HTTPException(self._refusals[verdict])

    def enabled(self, request: Request) -> frozenset[str]:
        """The flags the request's org sees (blocking, like `check`)."""
        return features(self.reader, self.org_id(request))


class FeatureRequirement:
    """A route's flag requirement, used either way:

    - FastAPI: `Depends(gate.require_feature("key"))` (in `dependencies=[...]` of a route or router);
      FastAPI runs it in its threadpool, as it runs every plain-function dependency;
    - Starlette: `@gate.require_feature("key")` on an endpoint `(request)` or an `HTTPEndpoint`
      method `(self, request)`, async or not.
    """

    # FastAPI reads a dependency's parameters from its signature: one, `request: Request`.
    __signature__ = inspect.Signature(
        [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)],
        return_annotation=None,
    )

    def __init__(self, gate: FeatureGate, requirement: Requirement) -> None:
        self.gate = gate
        self.requirement = requirement

    @overload
    def __call__(self, request: Request) -> None: ...

    @overload
    def __call__(self, request: Endpoint) -> Callable[..., Awaitable[Any]]: ...

    def __call__(self, request: Request | Endpoint) -> Callable[..., Awaitable[Any]] | None:
        if isinstance(request, Request):
            self.gate.check(request, self.requirement)
            return None
        return self._guard(request)

    def _guard(self, endpoint: Endpoint) -> Callable[..., Awaitable[Any]]:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def guarded(*args: Any) -> Any:
            await run_in_threadpool(self.gate.check, args[-1], self.requirement)
            if is_async:
                return await endpoint(*args)
            return await run_in_threadpool(endpoint, *args)

        return guarded

    def __repr__(self) -> str:
        kind = "all" if self.requirement.every else "any"
        return f"<FeatureRequirement {kind} of {', '.join(self.requirement.keys)}>"


class FeaturesMiddleware:
    """Sets `request.state.features` (a frozenset of flag keys, empty without an org) on every HTTP
    request, like the old service's `attachEnabledFeatures`. Add it after (inside) any middleware the
    org resolver relies on, such as AuthenticationMiddleware:
    `Middleware(FeaturesMiddleware, gate=gate)` or `app.add_middleware(FeaturesMiddleware, gate=gate)`."""

    def __init__(self, app: ASGIApp, gate: FeatureGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            request.state.features = await run_in_threadpool(self.gate.enabled, request)
        await self.app(scope, receive, send)
