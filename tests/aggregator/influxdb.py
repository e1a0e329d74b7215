"""Per-test InfluxDB databases for the aggregator's tests (the server itself is the root ``influx_url``).

Each test gets its own ``kph3_<random>`` database name, not created (the sinks must create it), and the
database is dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from aggregator.errors import SinkError
from aggregator.sinks.influx_v1 import InfluxV1Backend, quote_identifier


@pytest.fixture
def influx_db(influx_url: str) -> Iterator[str]:
    """A fresh database name (not created); dropped after the test."""
    name = f"kph3_{uuid.uuid4().hex[:12]}"
    yield name
    with requests.Session() as session:
        backend = InfluxV1Backend(session, url=influx_url, database=name)
        try:
            backend.query(f"DROP DATABASE {quote_identifier(name)}", database=name)
        except SinkError as exc:  # pragma: no cover - cleanup must not hide the test's own outcome
            print(f"could not drop {name}: {exc}")


@pytest.fixture
def influx_reader(influx_url: str, influx_db: str) -> Iterator[InfluxV1Backend]:
    """A v1 backend on the test's database, for reading back with InfluxQL."""
    with requests.Session() as session:
        yield InfluxV1Backend(session, url=influx_url, database=influx_db)
