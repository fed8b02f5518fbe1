"""The S3 key pair reaches rclone by environment, as the one value rclone's CSV reading yields."""

from __future__ import annotations

import csv

from hypothesis import given
from hypothesis import strategies as st

from infra.localstack.servers import rclone_auth_key

# rclone reads RCLONE_<FLAG> of a repeatable flag with Go's encoding/csv: one record, one value per field.
printable = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(access=printable, secret=printable)
def test_the_pair_is_one_csv_field(access: str, secret: str) -> None:
    (record,) = list(csv.reader([rclone_auth_key(access, secret)]))
    assert record == [f"{access},{secret}"]


def test_a_plain_pair_is_quoted() -> None:
    assert rclone_auth_key("parley-local", "s3cr3t") == '"parley-local,s3cr3t"'
