"""Load benchmark: the platform's message throughput under load, against what its parts can do at all.

Run it as ``python -m bench.load`` (see bench/README.md and ``--help``). Figures only: nothing
here asserts on timing, and no test runs it.
"""
