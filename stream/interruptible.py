"""A blocking client call that a stopping process does not have to wait out.

kafka-python's requests wait up to their own timeouts (30 s for a ListOffsets or an OffsetCommit whose broker is
gone) and cannot be cancelled. :func:`call_interruptibly` runs such a call on a daemon thread and waits for it in
short slices: the answer of a broker that answers comes back as before, with the client's own timeout and no
request sent twice, and once ``interrupted`` is set (the stage's SIGTERM), a slice without an answer ends the wait
with ``UnavailableError``. The call is left to end on its own; its result is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from stream.errors import UnavailableError

T = TypeVar("T")

WAIT_SLICE_S = 0.2  # how soon an interrupt is heard while a call waits on a silent broker


def call_interruptibly(call: Callable[[], T], interrupted: threading.Event, *, what: str) -> T:
    """``call()``, or ``UnavailableError`` naming ``what`` once ``interrupted`` is set and a slice of
    ``WAIT_SLICE_S`` passes without its answer. What ``call`` raises is raised here."""
    done = threading.Event()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001  # handed to the caller below
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="interruptible-call", daemon=True).start()
    while not done.wait(WAIT_SLICE_S):
        if interrupted.is_set():
            raise UnavailableError(f"{what}: no answer, and the process is stopping")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
