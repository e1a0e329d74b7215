"""Aggregator test fixtures: a fresh InfluxDB database per test (the server is the root ``influx_url``)."""

from tests.aggregator.influxdb import influx_db, influx_reader

__all__ = ["influx_db", "influx_reader"]
