"""Datasets. Importing this package registers the built-in datasets."""
from __future__ import annotations

from .base import Dataset, Split  # noqa: F401
from .synthbirds import dataset as _synthbirds  # noqa: F401,E402  (registers "synthbirds")
