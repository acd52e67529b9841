"""Backbones. Importing this package registers the built-in backbones."""
from __future__ import annotations

from . import dinov2 as _dinov2  # noqa: F401
from . import families as _families  # noqa: F401
from . import weightfree as _weightfree  # noqa: F401
from .base import Backbone  # noqa: F401
from .build import build_backbone  # noqa: F401
