"""Registries for methods, metrics, datasets and backbones.

Three ways to add an entry, none of which edits this repository:

* the decorators `register_method("name", ...)` and friends, in any imported
  module (the built-in ones live in `xbench.methods`, `xbench.metrics`,
  `xbench.data`, `xbench.backbones`);
* an installed distribution that declares entry points in the groups
  `xbench.methods`, `xbench.metrics`, `xbench.datasets`, `xbench.backbones`;
* `--include path.py` on the command line, which imports that file (only
  when passed).

Plugins are imported only when named: the registry reads the entry points'
*names* from the installed distributions' metadata (no import) and imports a
plugin module the first time its name is looked up (`get`), e.g. by
`--methods NAME`, or when every entry is needed with its spec (`entries()`:
`xbench ls`, and a run without `--methods` / `--metrics`, which runs all of
them). `names()` and `name in registry` list declared plugins without
importing them. A plugin's import runs its decorators; an entry point whose
object is not decorated is registered under the entry point's name.

Each entry carries a spec (a dataclass from `xbench.specs`) describing it.
Lookups of unknown names raise a one-line `ConfigError` with the closest names.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from .errors import ConfigError, unknown_name

T = TypeVar("T")

#: built-in modules whose import registers the built-in entries, per kind
_BUILTIN_MODULES = {
    "method": ["xbench.methods"],
    "metric": ["xbench.metrics"],
    "dataset": ["xbench.data"],
    "backbone": ["xbench.backbones"],
}
_GROUPS = {
    "method": "xbench.methods",
    "metric": "xbench.metrics",
    "dataset": "xbench.datasets",
    "backbone": "xbench.backbones",
}


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    spec: Any
    source: str  # "builtin", "entry-point:<dist>", "include:<path>" or the module name


class Registry(Generic[T]):
    """Name -> (object, spec). Loads built-ins lazily, once; plugins (entry points) when named."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._plugins: dict[str, Any] = {}  # declared entry points not imported yet, by name
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    # registration -----------------------------------------------------------------
    def add(self, name: str, obj: T, spec: Any, source: str | None = None) -> None:
        if not name or name != name.strip() or "," in name:
            raise ConfigError(f"invalid {self.kind} name {name!r}: use a non-empty name without commas")
        src = source or getattr(obj, "__module__", "?")
        old = self._entries.get(name)
        if old is not None and old.obj is not obj and _qualname(old.obj) != _qualname(obj):
            raise ConfigError(
                f"{self.kind} {name!r} is registered twice ({old.source} and {src}); rename one of them"
            )
        self._entries[name] = Entry(name, obj, spec, src)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    # lookup -----------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded or self._loading:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for mod in _BUILTIN_MODULES[self.kind]:
                    importlib.import_module(mod)
                for ep in entry_points(group=_GROUPS[self.kind]):  # names only: nothing is imported here
                    if (_GROUPS[self.kind], ep.name) not in _loaded_entry_points:
                        self._plugins.setdefault(ep.name, ep)
            finally:
                self._loading = False
            self._loaded = True

    def _load_plugin(self, name: str) -> None:
        with self._lock:
            ep = self._plugins.pop(name, None)
            if ep is not None:
                _load_entry_point(self.kind, ep)

    def get(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        if name not in self._entries and name in self._plugins:
            self._load_plugin(name)
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, set(self._entries) | set(self._plugins)) from None

    def __contains__(self, name: str) -> bool:
        """Whether `name` is registered or declared by an installed plugin (without importing it)."""
        self._ensure_loaded()
        return name in self._entries or name in self._plugins

    def names(self) -> list[str]:
        """Registered names and installed plugins' declared names (without importing them)."""
        self._ensure_loaded()
        return sorted(set(self._entries) | set(self._plugins))

    def entries(self) -> list[Entry[T]]:
        """Every entry with its object and spec: imports every installed plugin of this kind."""
        self._ensure_loaded()
        for name in sorted(self._plugins):
            self._load_plugin(name)
        return [self._entries[n] for n in sorted(self._entries)]


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


METHODS: Registry = Registry("method")
METRICS: Registry = Registry("metric")
DATASETS: Registry = Registry("dataset")
BACKBONES: Registry = Registry("backbone")
REGISTRIES = {"methods": METHODS, "metrics": METRICS, "datasets": DATASETS, "backbones": BACKBONES}


def _decorator(registry: Registry, name: str, spec_factory: Callable[[Any], Any]) -> Callable[[T], T]:
    def wrap(obj: T) -> T:
        spec = spec_factory(obj)
        registry.add(name, obj, spec)
        try:
            setattr(obj, "spec", spec)
        except (AttributeError, TypeError):  # pragma: no cover - builtins
            pass
        return obj

    return wrap


def register_method(name: str, **spec_fields: Any) -> Callable[[T], T]:
    """Class decorator: register a `xbench.methods.base.Method` subclass."""
    from .specs import MethodSpec

    return _decorator(METHODS, name, lambda obj: MethodSpec.build(name, obj, **spec_fields))


def register_metric(name: str, **spec_fields: Any) -> Callable[[T], T]:
    """Decorator for a metric function `fn(ctx) -> float` (see `xbench.metrics.base`)."""
    from .specs import MetricSpec

    return _decorator(METRICS, name, lambda obj: MetricSpec.build(name, obj, **spec_fields))


def register_dataset(name: str, **spec_fields: Any) -> Callable[[T], T]:
    """Class decorator: register a `xbench.data.base.Dataset` subclass."""
    from .specs import DatasetSpec

    return _decorator(DATASETS, name, lambda obj: DatasetSpec.build(name, obj, **spec_fields))


def register_backbone(name: str, **spec_fields: Any) -> Callable[[T], T]:
    """Decorator for a backbone factory `fn(weights, **kw) -> Backbone`."""
    from .specs import BackboneSpec

    return _decorator(BACKBONES, name, lambda obj: BackboneSpec.build(name, obj, **spec_fields))


# plugins -------------------------------------------------------------------------------
_loaded_entry_points: set[tuple[str, str]] = set()


def _load_entry_point(kind: str, ep: Any) -> None:
    """Import one plugin entry point (its decorators register it) and record where it came from."""
    group = _GROUPS[kind]
    key = (group, ep.name)
    if key in _loaded_entry_points:
        return
    _loaded_entry_points.add(key)
    try:
        obj = ep.load()
    except Exception as err:  # a broken plugin must not break xbench
        raise ConfigError(
            f"plugin entry point {ep.name!r} ({ep.value}) in group {group!r} failed to import: "
            f"{type(err).__name__}: {err}; fix or uninstall that package"
        ) from None
    registry = {"method": METHODS, "metric": METRICS, "dataset": DATASETS, "backbone": BACKBONES}[kind]
    dist = getattr(getattr(ep, "dist", None), "name", "?")
    # The import ran the decorator; if the object was not decorated, register it under
    # the entry point's name with a default spec.
    if not any(e.obj is obj for e in registry._entries.values()):
        deco = {"method": register_method, "metric": register_metric,
                "dataset": register_dataset, "backbone": register_backbone}[kind]
        deco(ep.name)(obj)
    for e in list(registry._entries.values()):
        if e.obj is obj:
            registry._entries[e.name] = Entry(e.name, e.obj, e.spec, f"entry-point:{dist}")


def include(path: str | Path) -> None:
    """Import a local Python file so that its decorators register entries (`--include`)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--include {path}: no such file; pass the path of a .py file")
    mod_name = include_module_name(p)
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--include {path}: cannot import this file; it must be a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[mod_name]
        raise ConfigError(f"--include {path}: importing it failed: {type(err).__name__}: {err}") from None


def include_module_name(path: str | Path) -> str:
    """The module name `--include path` imports the file under: built from the whole resolved path, so two
    files of the same name in different folders (a/plug/m.py, b/plug/m.py) are two modules."""
    parts = Path(path).resolve().with_suffix("").parts[1:]
    return "xbench_include_" + "__".join(re.sub(r"\W", "_", part) for part in parts)
