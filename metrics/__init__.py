"""Metrics (installed as xbench.metrics). Importing this package registers the built-in metrics."""
