"""``stream.interruptible.call_interruptibly``: a blocking call's answer as before, an interrupt heard in a slice."""

from __future__ import annotations

import threading
import time

import pytest

from stream.errors import UnavailableError
from stream.interruptible import WAIT_SLICE_S, call_interruptibly


def test_the_answer_and_the_error_of_the_call_come_back() -> None:
    assert call_interruptibly(lambda: 42, threading.Event(), what="answer") == 42

    def refuse() -> int:
        raise KeyError("refused")

    with pytest.raises(KeyError, match="refused"):
        call_interruptibly(refuse, threading.Event(), what="refusal")


def test_an_interrupt_ends_the_wait_on_a_call_that_does_not_answer() -> None:
    interrupted = threading.Event()
    release = threading.Event()
    threading.Timer(0.3, interrupted.set).start()
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="commit of group 'g': no answer, and the process is stopping"):
        call_interruptibly(lambda: release.wait(30), interrupted, what="commit of group 'g'")
    assert time.monotonic() - started < 0.3 + WAIT_SLICE_S + 2.0
    release.set()  # the abandoned call ends on its own


def test_after_an_interrupt_a_call_that_answers_still_returns() -> None:
    interrupted = threading.Event()
    interrupted.set()
    assert call_interruptibly(lambda: "flushed", interrupted, what="quick") == "flushed"
