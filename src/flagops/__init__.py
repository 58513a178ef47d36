"""flagops: feature flags as code, planned and applied to databases; this package's public API."""

from flagops.errors import (
    BlockedError,
    ConfigError,
    DatabaseError,
    FlagopsError,
    LockTimeoutError,
    SchemaError,
    StalePlanError,
    UsageError,
)
from flagops.runtime.rollout import Evaluation, bucket, evaluate

__all__ = [
    "BlockedError",
    "ConfigError",
    "DatabaseError",
    "Evaluation",
    "FlagopsError",
    "LockTimeoutError",
    "SchemaError",
    "StalePlanError",
    "UsageError",
    "bucket",
    "evaluate",
]
