"""Renders docs/schema.md from the metric catalog: ``python -m aggregator.schema_doc > docs/schema.md``."""

from __future__ import annotations

import sys

from aggregator.catalog import OPTIONAL_TAGS_BY_LEVEL, TAGS_BY_LEVEL, Level, fields_for

_PREAMBLE = """\
# InfluxDB schema

Generated from `aggregator/catalog.py` by `python -m aggregator.schema_doc > docs/schema.md`; a test fails
when this file and the catalog disagree. Dashboards, the query API and the writer take names from the
catalog, never from this page.

## Conventions
- One measurement per rollup level: `container`, `pod`, `namespace`, `node`, `cluster`.
- Every point is written at the start of its time bucket: a multiple of the aggregator's
  `KPULSE_AGGREGATOR_RESOLUTION_SECONDS` (default 10 s, equal to the collectors' interval). Writing the same
  series and bucket again overwrites, so a replay or a late node never duplicates a point.
- Every field is a float. Units are in the names: `_millicores` (1000 = one core busy), `_bytes`,
  `_per_second`, `_seconds_total`, `_ratio` (0..1), `_count`.
- Kinds: a *gauge* is a reading (or a sum of readings), a *counter* is cumulative since the entity started,
  a *rate* is a counter's per-second change over one interval, computed from the samples' own timestamps.
  A rate is absent (not zero) for the first interval of a series, across a restart (new container id or
  start time) and when a counter went backwards: never negative, never a spike.
- Rollups are sums, never means: a pod is the sum of its containers (its network comes from the pod's own
  network namespace), a namespace the sum of its pods across nodes, the cluster the sum of its nodes. A node
  is the node's own usage read from the host (not the sum of its containers) plus its capacity.
- A field a source does not report is absent, never zero (e.g. limits of unlimited containers, kubelet-only
  requests on Docker hosts). On Docker hosts with cgroup v1, recent kernels (seen on 6.18) account block
  I/O to a container only when it has a throttle rule for the device (`docker run --device-read-bps`,
  any rate): without one the engine reports no block I/O and the `disk_*` fields are absent.
- Tags never carry container ids, image names or label blobs: series cardinality stays that of the workload.
"""


def render() -> str:
    """The whole schema document as Markdown."""
    parts = [_PREAMBLE]
    for level in Level:
        tags = ", ".join(f"`{tag}`" for tag in TAGS_BY_LEVEL[level])
        optional = ", ".join(f"`{tag}`" for tag in OPTIONAL_TAGS_BY_LEVEL.get(level, ()))
        parts.append(f"\n## Measurement `{level}`\n\nTags: {tags}")
        if optional:
            parts.append(f"; when the source knows them: {optional}")
        parts.append(".\n\n| field | kind | unit | description |\n|---|---|---|---|\n")
        for metric in fields_for(level):
            parts.append(f"| `{metric.name}` | {metric.kind} | {metric.unit} | {metric.description} |\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
