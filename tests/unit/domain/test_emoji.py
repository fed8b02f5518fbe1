"""Reactions are emoji only: flags, keycaps, skin tones, ZWJ sequences; never plain text."""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.emoji import (
    CANCEL_TAG,
    EMOJI_STYLE,
    KEYCAP,
    PICTOGRAPHIC,
    REGIONAL_INDICATORS,
    SKIN_TONES,
    TAGS,
    TEXT_STYLE,
    ZWJ,
    is_emoji,
    is_pictographic,
)

VALID = [
    "👍",  # a pictograph
    "👍🏽",  # a skin tone
    "❤️",  # emoji presentation of a text-default character
    "☺︎",  # text presentation
    "©",  # a text-default emoji
    "🇫🇷",  # a flag
    "🇺🇳",
    "1️⃣",  # keycaps
    "#⃣",
    "*️⃣",
    "👩\u200d👩\u200d👧\u200d👦",  # a family (ZWJ)
    "🏳️\u200d🌈",  # ZWJ after a presentation selector
    "👨🏽\u200d💻",  # tone and ZWJ
    "🧑🏻\u200d🤝\u200d🧑🏿",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # a subdivision flag (tags)
    "🫠",  # Unicode 14
    "👍👍🎉",  # several
    "\U0001faea",  # an unassigned code point of an emoji block: a future emoji
]
INVALID = [
    "",
    " ",
    "ok",
    "+1",
    ":)",
    "1",  # a digit that is not a keycap
    "#",
    "1\ufe0f",  # a keycap without its U+20E3
    "é",
    "中",
    "👍 ",  # a space
    " 👍",
    "x👍",
    "👍\u200d",  # a ZWJ with nothing after it
    "\u200d👍",
    "🇫",  # half a flag
    "🇫🇷🇩",
    "🏽",  # a tone on its own
    "\ufe0f",
    "🏴\U000e0067\U000e0062",  # tags without their end
    "\u20e3",
]


@pytest.mark.parametrize("text", VALID)
def test_emoji_are_accepted(text: str) -> None:
    assert is_emoji(text)


@pytest.mark.parametrize("text", INVALID)
def test_everything_else_is_refused(text: str) -> None:
    assert not is_emoji(text)


def test_the_table_is_sorted_and_disjoint() -> None:
    assert all(first <= last for first, last in PICTOGRAPHIC)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(PICTOGRAPHIC))
    assert not any(is_pictographic(c) for c in string.printable)


@given(st.text(alphabet=string.printable, min_size=1))
def test_plain_ascii_is_never_emoji(text: str) -> None:
    assert not is_emoji(text)


@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=6))
def test_emoji_strung_together_stay_emoji(parts: list[str]) -> None:
    assert is_emoji("".join(parts))


@given(
    st.lists(st.sampled_from(VALID), min_size=1, max_size=4),
    st.characters(categories=("L", "N", "P", "Zs")),
    st.data(),
)
def test_one_letter_digit_space_or_punctuation_spoils_it(parts: list[str], intruder: str, data: st.DataObject) -> None:
    text = "".join(parts)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    spoiled = text[:at] + intruder + text[at:]
    assert not is_emoji(spoiled)


COMPONENTS = {ZWJ, TEXT_STYLE, EMOJI_STYLE, KEYCAP, CANCEL_TAG, *"0123456789#*"}


@given(st.text(max_size=12))
def test_anything_accepted_is_made_of_emoji_characters(text: str) -> None:
    if is_emoji(text):
        for char in text:
            code = ord(char)
            assert (
                is_pictographic(char)
                or char in COMPONENTS
                or code in SKIN_TONES
                or code in REGIONAL_INDICATORS
                or code in TAGS
            ), hex(code)
