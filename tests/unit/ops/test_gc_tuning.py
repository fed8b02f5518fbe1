"""The collector settings of the long-running processes (each case in a fresh interpreter: they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from infra.gc_tuning import THRESHOLDS

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], check=True, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_service_freezes_what_start_up_left_and_collects_less_often() -> None:
    got = _run(
        """
        import gc, json
        from infra import gc_tuning
        before = gc.get_freeze_count()
        gc_tuning.for_service()
        print(json.dumps({"thresholds": gc.get_threshold(), "before": before, "frozen": gc.get_freeze_count()}))
        """
    )
    assert got["thresholds"] == list(THRESHOLDS)
    assert got["before"] == 0
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000, "the modules loaded so far are frozen"


def test_fewer_collections_puts_everything_back() -> None:
    got = _run(
        """
        import gc, json
        from infra.gc_tuning import fewer_collections
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            inside = (gc.get_threshold(), gc.get_freeze_count() > 0)
        print(json.dumps({"inside": inside, "after": [gc.get_threshold(), gc.get_freeze_count()]}))
        """
    )
    assert got["inside"] == [list(THRESHOLDS), True]
    assert got["after"] == [[700, 10, 10], 0]


def test_fewer_collections_keeps_a_service_s_own_settings() -> None:
    """Inside a service (frozen, its thresholds set), a rebuild leaves both as they were."""
    got = _run(
        """
        import gc, json
        from infra import gc_tuning
        gc_tuning.for_service()
        gc.set_threshold(1234, 5, 6)
        frozen = gc.get_freeze_count()
        with gc_tuning.fewer_collections():
            pass
        print(json.dumps({"thresholds": gc.get_threshold(), "still_frozen": gc.get_freeze_count() >= frozen}))
        """
    )
    assert got == {"thresholds": [1234, 5, 6], "still_frozen": True}
