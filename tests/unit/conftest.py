"""Hypothesis profiles for the unit tier: "ci" (default) and "dev"; pick with HYPOTHESIS_PROFILE."""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=30, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
