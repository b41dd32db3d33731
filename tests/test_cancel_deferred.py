"""cancel.deferred(): a signal delivered during a teardown inside another library is held until
the teardown ends, then has exactly the effect it would have had (Ray turned one raised inside
``ray.shutdown`` into an exit 1 with no message)."""

from __future__ import annotations

import os
import signal

import pytest

from curate import cancel


@pytest.fixture
def curate_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    cancel.clear()
    # install() leaves a SIGINT its parent ignored ignored (a suite started in the background, as CI
    # may start it): give it Python's default first, so curate's handler is installed for both.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cancel.install()
    yield
    for s, h in before.items():
        signal.signal(s, h)
    cancel.clear()


@pytest.mark.parametrize("sig, raised", [(signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_inside_the_block_is_raised_after_it(curate_handlers, sig, raised):
    steps = []
    with pytest.raises(raised) as e:
        with cancel.deferred():
            os.kill(os.getpid(), sig)
            steps.append("after the signal")  # the teardown goes on to its end
            steps.append("teardown done")
    assert steps == ["after the signal", "teardown done"]
    assert cancel.requested() == sig
    if raised is SystemExit:
        assert e.value.code == 128 + sig
    assert signal.getsignal(sig) is cancel.handler  # curate's handler is back


def test_no_signal_no_effect(curate_handlers):
    with cancel.deferred():
        pass
    assert cancel.requested() is None and signal.getsignal(signal.SIGTERM) is cancel.handler


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with cancel.deferred():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
        assert cancel.requested() is None
    finally:
        signal.signal(signal.SIGTERM, before)
