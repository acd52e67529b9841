"""Datasets. Importing this package registers the built-in datasets."""
from __future__ import annotations

from .base import Dataset, Split  # noqa: F401
from .synthbirds import dataset as _synthbirds  # noqa: F401,E402  (registers "synthbirds")
from . import cub as _cub  # noqa: F401,E402  (registers "cub")
from . import cars as _cars  # noqa: F401,E402  (registers "cars")
from . import pets as _pets  # noqa: F401,E402  (registers "pets")
from . import funnybirds as _funnybirds  # noqa: F401,E402  (registers "funnybirds")
from . import rsna as _rsna  # noqa: F401,E402  (registers "rsna")
from . import userfolder as _userfolder  # noqa: F401,E402  (registers "folder": --datasets folder:PATH)
