"""Correlation ids: kept when a client supplies a valid one, otherwise made fresh."""

from __future__ import annotations

import re
import uuid

HEADER = "X-Correlation-ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_valid_correlation_id(value: object) -> bool:
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def correlation_id_or_new(value: object) -> str:
    return value if isinstance(value, str) and is_valid_correlation_id(value) else str(uuid.uuid4())
