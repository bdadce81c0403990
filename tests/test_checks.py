"""Tests of lc_keras.checks: argument checks with Keras-style errors."""

import doctest

import numpy as np
import pytest

from lc_keras import checks
from lc_keras.checks import check_bool
from lc_keras.checks import check_choice
from lc_keras.checks import check_distinct_numbers
from lc_keras.checks import check_flags
from lc_keras.checks import check_int
from lc_keras.checks import check_int_interval
from lc_keras.checks import check_number
from lc_keras.checks import check_seed


@pytest.fixture(autouse=True)
def _seed_and_clear():
    """Overrides the conftest fixture: no Keras model is built here."""
    yield


def test_check_number():
    assert check_number("O", "x", np.float32(0.5)) == 0.5
    assert type(check_number("O", "x", np.int64(2))) is float
    with pytest.raises(TypeError, match=r"O requires x to be a number. "
                                        r"Received: x=True of type bool"):
        check_number("O", "x", True)
    with pytest.raises(ValueError, match=r"x to be finite and in \[0, 1\]"):
        check_number("O", "x", float("nan"), low=0, high=1)
    with pytest.raises(ValueError, match=r"O requires x < 1. Received: x=1.0"):
        check_number("O", "x", 1, high=1, high_inclusive=False)


def test_check_int_bounds():
    assert check_int("O", "k", np.int64(3), low=1, high=3) == 3
    assert type(check_int("O", "k", np.int32(3))) is int
    with pytest.raises(ValueError, match=r"^O requires k >= 2. Received: k=1$"):
        check_int("O", "k", 1, low=2, high=4)
    with pytest.raises(ValueError, match=r"^O requires k <= 4. Received: k=5$"):
        check_int("O", "k", 5, low=2, high=4)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match=r"O requires k to be an int. "
                                            r"Received: k="):
            check_int("O", "k", bad)


def test_check_seed():
    assert check_seed("O", -(2**63)) == -(2**63)
    assert check_seed("O", np.uint64(2**63 - 1)) == 2**63 - 1
    with pytest.raises(ValueError, match=r"seed >= -9223372036854775808"):
        check_seed("O", -(2**63) - 1)
    with pytest.raises(TypeError, match=r"O requires s to be an int"):
        check_seed("O", 0.5, name="s")


def test_check_bool():
    assert check_bool("O", "f", np.bool_(True)) is True
    for bad in (1, "no", None):
        with pytest.raises(TypeError, match=r"O requires f to be a bool "
                                            r"\(True or False\). Received: f="):
            check_bool("O", "f", bad)


def test_check_int_interval():
    names = ("lo", "hi")
    assert check_int_interval("O", names, (np.int8(-1), 2), low=-3) == (-1, 2)
    assert check_int_interval("O", names, (2, 2)) == (2, 2)
    with pytest.raises(ValueError, match=r"^O requires lo <= hi. Received: "
                                         r"lo=3, hi=2$"):
        check_int_interval("O", names, (3, 2))
    with pytest.raises(ValueError, match=r"O requires hi <= 5. Received: hi=6"):
        check_int_interval("O", names, (0, 6), high=5)
    with pytest.raises(TypeError, match="lo to be an int"):
        check_int_interval("O", names, (0.5, 1))


def test_check_choice():
    assert check_choice("O", "m", "b", ("a", "b")) == "b"
    with pytest.raises(ValueError, match=r"^O requires m to be one of 'a', "
                                         r"'b'. Received: m=\['a'\]$"):
        check_choice("O", "m", ["a"], ("a", "b"))


def test_check_distinct_numbers():
    assert check_distinct_numbers("O", "v", np.array([2, 1])) == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"O requires at most 2 values. "
                                         r"Received: 3 values"):
        check_distinct_numbers("O", "v", [1, 2, 3], max_size=2)
    with pytest.raises(ValueError, match=r"distinct values \(in float32\). "
                                         r"Received: value 1.0 more than "
                                         r"once in v="):
        check_distinct_numbers("O", "v", [1.0, 1.0 + 1e-9])
    with pytest.raises(ValueError, match=r"finite float32 values. Received: "
                                         r"v\[0\]=-inf"):
        check_distinct_numbers("O", "v", [float("-inf")])
    with pytest.raises(ValueError, match=r"at least one value. Received: "
                                         r"v=\(\)"):
        check_distinct_numbers("O", "v", ())
    with pytest.raises(ValueError, match=r"v to be a flat list of numbers"):
        check_distinct_numbers("O", "v", [[1.0]])
    with pytest.raises(TypeError, match=r"v to be a list of numbers. "
                                        r"Received: v=\['x'\]"):
        check_distinct_numbers("O", "v", ["x"])


def test_check_flags():
    assert check_flags("O", "t", None, 2) is None
    assert check_flags("O", "t", np.bool_(False), 2) is False
    assert check_flags("O", "t", (True, np.bool_(False)), 2) == [True, False]
    with pytest.raises(ValueError, match=r"one t flag per value \(3\). "
                                         r"Received: t=\[True\] \(length 1\)"):
        check_flags("O", "t", [True], 3)
    with pytest.raises(TypeError, match=r"t to hold bools. Received: "
                                        r"t\[0\]=0 \(of type int\)"):
        check_flags("O", "t", [0], 1)
    with pytest.raises(TypeError, match=r"t to be None, a bool or a list of "
                                        r"bools. Received: t=1"):
        check_flags("O", "t", 1, 1)


def test_docstring_examples():
    result = doctest.testmod(checks, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
