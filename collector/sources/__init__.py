"""Data sources of the node agent: each reads one runtime and answers ``collect()`` with one scrape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from collector.wire import ContainerSample, NodeSample, PodSample

SourceName = Literal["docker", "kubelet"]


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one source read in one pass; ``node`` is ``None`` when the source does not know the node."""

    containers: list[ContainerSample] = field(default_factory=list)
    pods: list[PodSample] = field(default_factory=list)
    node: NodeSample | None = None


class Source(Protocol):
    """A runtime the collector reads. ``collect`` must not raise for one bad container: it skips and logs."""

    name: SourceName

    def collect(self) -> Scrape:
        """Read every running container once; raises ``SourceError`` only when the runtime is unreachable."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
