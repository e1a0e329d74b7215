"""One router per resource: ``ingest`` (batches from collectors), ``health`` (probes), ``metrics``."""
