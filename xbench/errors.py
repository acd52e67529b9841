"""Errors a user can cause.

Every such error ends the CLI with one clear line (naming the file or value and
the fix), a non-zero exit code and no traceback. Code raises `UserError` (or a
subclass) for anything the user can fix; everything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix; `str(err)` is the one line shown."""

    exit_code = 2


class DataError(UserError):
    """Missing, unreadable or inconsistent dataset files."""


class ConfigError(UserError):
    """A bad option, config file or name."""


class WeightsError(UserError):
    """Backbone weights missing or of the wrong architecture."""


class ResultsError(UserError):
    """A results record or results directory that cannot be used."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """`unknown method 'protfm'; did you mean 'protofm'? (valid: ...)`"""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(valid) or 'none registered'})")


class TrainingDiverged(Exception):
    """Raised by a head whose loss became NaN or infinite; the job is recorded as failed."""
