"""metrics.k8s.io pod lists kept rendered while clients list all pods, a pod re-rendered as its batch lands.

Rendering 30,000 pods for one ``kubectl top pods -A`` costs about 250 ms of CPU here, most of it waiting on
memory: a pod's series, values and names lie wherever they were allocated, and a sorted list visits them in
an order unrelated to that (docs/performance.md). Right after a batch, the same data is in the CPU's cache.
So once a client lists every pod, the view keeps each pod's text and re-renders the pods of every batch
right after the store takes it (about 3.5 µs per container); a list is then one pass joining texts. After
``idle_seconds`` without an all-pods list the texts are dropped, their memory freed and batches cost nothing
again; the next all-pods list builds the view anew, at about 1.5 times the cost of a list without it.

The answers are exactly the store's: pods whose newest sample is too old are left out at list time, labels
are read at list time (rendered again only when they changed), and a pod added or evicted changes the
store's pod generation, after which the view takes the store's pod list again.

Usage::

    view = PodListView(service, idle_seconds=300)
    view.note(batch)                              # after store.add(...) and store.add_labels(batch)
    body = view.pods_list(namespace=None, selector=EVERYTHING)   # bytes, a PodMetricsList
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from types import MappingProxyType

from aggregator.api.metrics_k8s_json import (
    ObjectTexts,
    labels_text,
    pod_metrics_list,
    pod_metrics_list_of_parts,
)
from aggregator.query.selector import Selector
from aggregator.query.service import QueryService
from aggregator.query.store import PodLatest
from collector.wire import Batch

_NS_PER_S = 1_000_000_000
_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_NAMESPACE = itemgetter(0)

PodKey = tuple[str, str]
"""``(namespace, pod)``."""


class _Text:
    """One pod's text: before its ``creationTimestamp``, its labels (and the mapping they were rendered
    from), and the rest."""

    __slots__ = ("before", "labels", "labels_text", "rest", "time_ns")

    def __init__(self, time_ns: int, before: str, rest: str) -> None:
        self.time_ns = time_ns
        self.before = before
        self.rest = rest
        self.labels: Mapping[str, str] = _NO_LABELS
        self.labels_text = ""


class PodListView:
    """The pod texts of ``service``'s cluster while all-pods lists are asked for (module docstring)."""

    def __init__(self, service: QueryService, *, idle_seconds: float) -> None:
        self._service = service
        self._store = service.store
        self._cluster = service.cluster
        self._idle_ns = round(idle_seconds * _NS_PER_S)
        self._texts_of = ObjectTexts(resolution_ns=service.resolution_ns)
        self._lock = threading.Lock()
        self._texts: dict[PodKey, _Text] | None = None
        """Every pod's text; ``None`` while inactive."""
        # The store's pods in order (as of ``_generation``), their texts at the same positions.
        self._order: list[PodKey] = []
        self._listed: list[_Text | None] = []
        self._position: dict[PodKey, int] = {}
        self._generation = -1
        self._labels_generation = -1
        self._asked_ns = 0

    @property
    def active(self) -> bool:
        """Whether the view holds texts (and batches re-render their pods)."""
        return self._texts is not None

    @property
    def pods_kept(self) -> int:
        """How many pods' texts are held."""
        texts = self._texts
        return 0 if texts is None else len(texts)

    def note(self, batch: Batch) -> None:
        """Re-render the pods ``batch`` carries, once the store holds it; nothing while inactive."""
        if self._texts is None:  # the common case, without the lock: a stale answer only delays one batch
            return
        keys = {(sample.namespace, sample.pod) for sample in batch.containers}
        with self._lock:
            if self._texts is None:
                return
            if self._service.now_ns() - self._asked_ns > self._idle_ns:
                self._deactivate()
                return
            self._render(
                self._store.latest_of_pods(self._cluster, keys, not_before_ns=0).items(), self._labels_of
            )

    def pods_list(self, *, namespace: str | None, selector: Selector) -> bytes:
        """The ``PodMetricsList`` of every fresh pod (of ``namespace``) matching ``selector``, as
        ``QueryService.pod_usage`` and ``pod_metrics_list`` would answer it.

        An all-pods list activates the view; a namespace's list uses it only while it is active."""
        service = self._service
        now_ns = service.now_ns()
        if self._idle_ns <= 0 or (namespace is not None and self._texts is None):
            return self._directly(namespace, selector, now_ns)
        store = self._store
        low_ns = store.fresh_since_ns(now_ns - service.fresh_ns)
        parts: list[tuple[str, str, str]] = []
        with self._lock:
            if namespace is None:
                self._asked_ns = now_ns
            self._take_pods()
            if low_ns is None:
                return pod_metrics_list_of_parts(parts, now_ns=now_ns)
            low, high = self._span(namespace)
            listed = self._listed[low:high]
            labels_generation = store.pod_labels_generation
            if labels_generation != self._labels_generation:
                self._relabel(self._order[low:high], listed)
                if low == 0 and high == len(self._order):
                    self._labels_generation = labels_generation
            everything = selector.empty
            append = parts.append
            for text in listed:
                if text is None or text.time_ns < low_ns:
                    continue
                if everything or selector.matches(text.labels):
                    append((text.before, text.labels_text, text.rest))
        return pod_metrics_list_of_parts(parts, now_ns=now_ns)

    def _directly(self, namespace: str | None, selector: Selector, now_ns: int) -> bytes:
        service = self._service
        pods = service.pod_usage(namespace=namespace, selector=selector)
        return pod_metrics_list(pods, now_ns=now_ns, resolution_ns=service.resolution_ns)

    def _take_pods(self) -> None:
        """Build the texts when inactive; take over pods the store added or evicted since."""
        store = self._store
        generation, keys = store.pod_keys(self._cluster)
        texts = self._texts
        if texts is not None and generation == self._generation:
            return
        if texts is None:
            # Every pod at once: one walk of the store's pod index and one copy of the labels.
            self._texts, self._position, self._listed = {}, {}, []
            labels_generation = store.pod_labels_generation
            every = store.latest_by_pod(self._cluster, not_before_ns=0)
            self._render((((found[0], found[1]), found) for found in every), store.all_pod_labels().get)
            self._labels_generation = labels_generation
        else:
            for key in texts.keys() - set(keys):
                del texts[key]
            missing = [key for key in keys if key not in texts]
            if missing:
                found = store.latest_of_pods(self._cluster, missing, not_before_ns=0)
                self._render(found.items(), self._labels_of)
        texts = self._texts
        assert texts is not None
        self._order, self._generation = keys, generation
        self._position = {key: index for index, key in enumerate(keys)}
        self._listed = [texts.get(key) for key in keys]

    def _labels_of(self, key: PodKey, default: Mapping[str, str]) -> Mapping[str, str]:
        return self._store.pod_labels(*key) or default

    def _span(self, namespace: str | None) -> tuple[int, int]:
        order = self._order
        if namespace is None:
            return 0, len(order)
        return bisect_left(order, namespace, key=_NAMESPACE), bisect_right(order, namespace, key=_NAMESPACE)

    def _relabel(self, keys: list[PodKey], texts: list[_Text | None]) -> None:
        """Take each pod's labels as the store holds them now, rendered again where they changed."""
        labels_of = self._store.all_pod_labels().get
        for key, text in zip(keys, texts, strict=True):
            if text is None:
                continue
            labels = labels_of(key, _NO_LABELS)
            if labels is not text.labels:
                text.labels, text.labels_text = labels, labels_text(labels)

    def _render(
        self,
        found: Iterable[tuple[PodKey, PodLatest | None]],
        labels_of: Callable[[PodKey, Mapping[str, str]], Mapping[str, str]],
    ) -> None:
        texts = self._texts
        assert texts is not None
        parts = self._texts_of.parts
        position, listed = self._position, self._listed
        for key, latest in found:
            text: _Text | None = None
            if latest is None:
                texts.pop(key, None)
            else:
                namespace, pod, time_ns, containers = latest
                before, rest = parts(namespace, pod, time_ns, containers)
                text = texts[key] = _Text(time_ns, before, rest)
                text.labels = labels = labels_of(key, _NO_LABELS)
                text.labels_text = labels_text(labels)
            at = position.get(key)
            if at is not None:
                listed[at] = text

    def _deactivate(self) -> None:
        self._texts, self._order, self._listed, self._position = None, [], [], {}
        self._generation = self._labels_generation = -1
