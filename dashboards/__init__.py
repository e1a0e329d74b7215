"""Grafana dashboards as code: one module per dashboard, shared helpers in ``house``, CLI in ``__main__``."""
