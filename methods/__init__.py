"""Methods (installed as xbench.methods). Importing this package registers the built-in methods."""
from __future__ import annotations

from . import linear_probe as _linear_probe  # noqa: F401
from . import gradcam as _gradcam  # noqa: F401
from .dino_qpm import method as _dino_qpm  # noqa: F401
from .protofm import method as _protofm  # noqa: F401
from . import dino_sldd as _dino_sldd  # noqa: F401
from . import dino_qsenn as _dino_qsenn  # noqa: F401
from .pip_net import method as _pip_net  # noqa: F401
