"""An OpenFeature provider serving flagops flags from a `FlagClient`; the org id is the targeting key.

Reasons: killed -> DISABLED, an org override -> TARGETING_MATCH, enabled for every org -> STATIC,
the percentage rollout -> SPLIT (DEFAULT when the percentage is 0: nobody is in the rollout).
Errors (the application's default value is returned): no targeting key -> TARGETING_KEY_MISSING,
a targeting key that is not a UUID -> INVALID_CONTEXT, an unknown flag -> FLAG_NOT_FOUND, a
string/number/object request -> TYPE_MISMATCH, no value ever read from the database -> GENERAL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from flagops.runtime.client import FlagClient
from flagops.runtime.rollout import Evaluation
from flagops.runtime.rollout import Reason as Rule

_T = TypeVar("_T")

_REASONS = {
    Rule.KILLED: Reason.DISABLED,
    Rule.OVERRIDE: Reason.TARGETING_MATCH,
    Rule.ENABLED: Reason.STATIC,
}


def _reason(evaluation: Evaluation) -> Reason:
    if evaluation.reason is Rule.ROLLOUT:
        return Reason.DEFAULT if evaluation.threshold == 0 else Reason.SPLIT
    return _REASONS[evaluation.reason]


def _error(default: _T, code: ErrorCode, message: str) -> FlagResolutionDetails[_T]:
    return FlagResolutionDetails(value=default, reason=Reason.ERROR, error_code=code, error_message=message)


class FlagopsProvider(AbstractProvider):
    """OpenFeature provider for flagops: `FlagopsProvider(FlagClient(url))` or `FlagopsProvider(url=url)`.

    The provider closes the client on shutdown only when it made it (from `url`).
    """

    def __init__(self, client: FlagClient | None = None, *, url: str | None = None, ttl: float = 300) -> None:
        super().__init__()
        if (client is None) == (url is None):
            raise ValueError("pass either a FlagClient or a url")
        self._owns_client = client is None
        self.client = client if client is not None else FlagClient(url or "", ttl)

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagops")

    def shutdown(self) -> None:
        if self._owns_client:
            self.client.close()

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        org_id = evaluation_context.targeting_key if evaluation_context is not None else None
        if not org_id:
            return _error(
                default_value,
                ErrorCode.TARGETING_KEY_MISSING,
                "flagops needs the org id as the targeting key",
            )
        try:
            found = self.client.lookup(org_id, flag_key)
        except ValueError:
            return _error(
                default_value,
                ErrorCode.INVALID_CONTEXT,
                f"the targeting key {org_id!r} is not an org id (a UUID)",
            )
        if not found.loaded:
            return _error(
                default_value, ErrorCode.GENERAL, "flagops could not read the flags from the database yet"
            )
        if found.evaluation is None:
            return _error(default_value, ErrorCode.FLAG_NOT_FOUND, f"flag {flag_key!r} does not exist")
        evaluation = found.evaluation
        metadata: dict[str, bool | int | float | str] = {"rule": evaluation.explain()}
        if found.stale:
            metadata["stale"] = True
        return FlagResolutionDetails(
            value=evaluation.value,
            reason=_reason(evaluation),
            variant="on" if evaluation.value else "off",
            flag_metadata=metadata,
        )

    def _mismatch(self, flag_key: str, default: _T, kind: str) -> FlagResolutionDetails[_T]:
        return _error(default, ErrorCode.TYPE_MISMATCH, f"flag {flag_key!r} is a boolean flag, not {kind}")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._mismatch(flag_key, default_value, "a string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._mismatch(flag_key, default_value, "an integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._mismatch(flag_key, default_value, "a float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._mismatch(flag_key, default_value, "an object")
