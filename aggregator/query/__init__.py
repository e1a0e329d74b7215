"""The query side of the aggregator: a recent window in memory, history from InfluxDB, and the formats of
the Heapster model API and of metrics.k8s.io (quantities, label selectors, timestamps)."""
