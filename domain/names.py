"""Usernames: the normal form that makes a reservation unique, and the stream that reserves it.

The stream id is `username:<keyed hash of the normal form>`, never the name: stream ids are record
keys and envelope fields in the log, which is never rewritten, so a name in them could not be
erased (docs/THREAT-MODEL.md). The key (`index_key`) is derived from the master key; the same name
always gives the same stream, which is what keeps names unique.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from domain.errors import invalid

USERNAME_MIN = 3
USERNAME_MAX = 32
_RAW_MAX = 256  # refuse absurd input before normalising it
_PUNCTUATION = frozenset("_.-")
USERNAME_STREAM_PREFIX = "username:"


def _allowed(char: str, first: bool) -> bool:
    category = unicodedata.category(char)
    if category.startswith("L") or category == "Nd" or char in _PUNCTUATION:
        return True
    # Combining marks belong to the letter before them (casefold turns "İ" into "i" + U+0307).
    return not first and category in ("Mn", "Mc")


def normalise_username(raw: str) -> str:
    """NFKC, casefold, NFKC again, strip; then 3..32 letters, digits, `_`, `.` or `-`.

    Raises DomainError("invalid") otherwise.
    """
    if not isinstance(raw, str):
        raise invalid("username must be a string")
    if len(raw) > _RAW_MAX:
        raise invalid("username is too long")
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold()).strip()
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        raise invalid(f"username must be {USERNAME_MIN} to {USERNAME_MAX} characters")
    if not all(_allowed(char, index == 0) for index, char in enumerate(name)):
        raise invalid("username may only hold letters, digits, '_', '.' and '-'")
    return name


def username_stream_id(raw: str, index_key: bytes) -> str:
    """The stream that reserves `raw` (DomainError("invalid") if it is not a valid username)."""
    return USERNAME_STREAM_PREFIX + username_hash(normalise_username(raw), index_key)


def username_hash(normalised: str, index_key: bytes) -> str:
    """The keyed hash of a normalised name that its reservation stream is named by."""
    return hmac.new(index_key, normalised.encode(), hashlib.sha256).hexdigest()[:40]
