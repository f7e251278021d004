"""Ctrl-C, SIGTERM and SIGHUP as one interruption.

Python turns SIGINT (Ctrl-C) into KeyboardInterrupt, while SIGTERM (what batch schedulers
send before they kill a job) and SIGHUP (a closed terminal or ssh session) end the process
at once, losing every iteration since the last periodic checkpoint. Within
:func:`stop_signals` all three raise :class:`StopSignal`, a KeyboardInterrupt, so that the
runner's one handler writes the checkpoint whichever arrives; :meth:`Signals.held`
postpones them over the few lines that must not be cut (swapping a run folder into place,
writing the interrupted run's checkpoint). A signal set to be ignored (``nohup``'s
SIGHUP, a background job's SIGINT) stays ignored, and outside the main thread, where
Python cannot install handlers, nothing changes.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

#: The signals that interrupt a run, where the system has them.
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class StopSignal(KeyboardInterrupt):
    """One of :data:`STOP_SIGNALS` (``signum``), raised as Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def signal_number(exc: BaseException) -> int:
    """The signal a KeyboardInterrupt stands for (SIGINT unless it is a StopSignal)."""
    return getattr(exc, "signum", int(signal.SIGINT))


class Signals:
    """The handlers :func:`stop_signals` installs: raise StopSignal, or, while
    :meth:`held`, keep the first signal until the held block ends."""

    def __init__(self):
        self.pending: int | None = None
        self._holding = 0

    def handler(self, signum, frame) -> None:
        if self._holding:
            self.pending = self.pending or signum
            return
        raise StopSignal(signum)

    @contextmanager
    def held(self, deliver: bool = True) -> Iterator[None]:
        """Postpone the signals until the block ends; then raise the first that came
        (``deliver``) or drop it (the interrupted run is being saved already)."""
        self._holding += 1
        pending = None
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                pending, self.pending = self.pending, None
        if deliver and pending is not None:
            raise StopSignal(pending)


@contextmanager
def stop_signals() -> Iterator[Signals]:
    """Make SIGINT, SIGTERM and SIGHUP raise StopSignal within the block, then restore the
    previous handlers."""
    signals = Signals()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if current is not signal.SIG_IGN:
                previous[signum] = current
                signal.signal(signum, signals.handler)
    try:
        yield signals
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
