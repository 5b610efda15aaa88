"""falweb.testing's wait helper: what it returns, and what a timeout says."""

import pytest

from falweb.testing import wait_until


def test_wait_until_returns_the_first_truthy_value():
    values = iter([None, 0, [], {"status": "COMPLETED"}])
    assert wait_until(lambda: next(values), interval=0) == {"status": "COMPLETED"}


def test_a_timeout_names_what_was_awaited():
    with pytest.raises(AssertionError, match=r"after 0\.05 s waiting for the moon"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, message="the moon")
    with pytest.raises(AssertionError, match="waiting for details known late"):
        wait_until(lambda: False, timeout=0.01, message=lambda: "details known late")


def test_ignored_exceptions_mean_not_yet_and_others_propagate():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not listening yet")
        return "up"

    assert wait_until(flaky, interval=0, ignore=ConnectionError) == "up"
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, ignore=ConnectionError)
