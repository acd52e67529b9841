"""Datasets. Importing this package registers the built-in datasets."""
from __future__ import annotations

from .base import Dataset, Split  # noqa: F401
