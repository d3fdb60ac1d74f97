"""The Python functions the native module calls from its dispatch thread's batches.

The native side schedules ``run_batch`` on an agent's (or a caller's) asyncio loop with
``loop.call_soon_threadsafe``; everything here therefore runs on that loop's thread. Importing
this module hands these functions to the native module (``_native.install_bridge``), which
therefore imports nothing from this package: the modules here depend on ``_native``, never the
other way round.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from typing import Any, Callable, Optional

from . import _native
from ._errors import error_from_native

__all__ = ["run_batch", "settle_future", "error_from_native"]

_log = logging.getLogger("toolmesh")


def run_batch(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    """Runs the ``(callback, args)`` pairs the dispatch thread queued for this loop, in order."""
    for callback, args in calls:
        try:
            callback(*args)
        except Exception:  # one broken callback must not starve the rest of the batch
            _log.exception("toolmesh callback %r failed", callback)


def settle_future(future: asyncio.Future, value: Any, exception: Optional[BaseException]) -> None:
    """Answers a future awaited by Python, unless its awaiter has given up (cancelled it)."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(value)


_native.install_bridge(run_batch, settle_future, error_from_native)

# A finalizing interpreter may never hand the GIL to the dispatch thread again.
atexit.register(_native.close_dispatch)
