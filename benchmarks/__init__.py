"""kpulse's benchmarks: collector overhead, ingest, query latency and growth, each against its target.

Usage::

    python -m benchmarks --quick      # every benchmark, short (under 5 minutes)
    python -m benchmarks              # the full runs
    python -m benchmarks --only ingest,growth --quick
"""
