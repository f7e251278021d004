"""Exceptions a user can cause. The CLI turns these into a one-paragraph message and exit 2.

Anything else that escapes is a bug in xhsi and keeps its traceback.
"""
from __future__ import annotations

import difflib
import signal
from pathlib import Path
from typing import Iterable


class XhsiError(Exception):
    """Base class of every error caused by user input (configs, files, plugins, data)."""


class ConfigError(XhsiError):
    """A run config or instrument file is malformed, has unknown keys or bad values."""


class PluginError(XhsiError):
    """A plugin is unknown, broken, or clashes with another one."""


class DataError(XhsiError):
    """Input data (counts cubes, response files) are missing, malformed or inconsistent."""


class ShapeError(DataError, ValueError):
    """Arrays or operators whose shapes do not fit together."""


class RunStopped(XhsiError):
    """A run was stopped before it finished (non-finite cost, interruption)."""


class Interrupted(RunStopped):
    """A run stopped by Ctrl-C, SIGTERM or SIGHUP, after writing its checkpoint
    (``checkpoint``: its path; None when the solver had not started and nothing was
    written). Exit code 128 + the signal's number: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP)."""

    def __init__(self, message: str, signum: int = signal.SIGINT, checkpoint: Path | None = None):
        super().__init__(message)
        self.signum, self.checkpoint = int(signum), checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean `x`?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""
