"""Argument checks with Keras-style errors, shared by the public classes.

Numbers may be Python or NumPy numbers (`np.float32(1e-3)`, `np.int64(3)`)
and come back as Python `float`/`int`; bools are refused where a number is
expected, and anything but a bool (e.g. the string `"no"`, which Python
would take as true) where a flag is expected. Errors read
`<Owner> requires <what>. Received: <name>=<value>`.
"""

import math
import numbers

import numpy as np


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def check_number(owner, name, value, *, low=None, low_inclusive=True,
                 high=None, high_inclusive=True):
    """A finite real number within bounds, as a Python float.

    Args:
        owner: Who checks (the class or function name in the message).
        name: The argument's name.
        value: The value to check (Python or NumPy real number).
        low: Lower bound, or None.
        low_inclusive: Whether `low` itself is allowed.
        high: Upper bound, or None.
        high_inclusive: Whether `high` itself is allowed.

    Returns:
        `float(value)`.

    Raises:
        TypeError: for a bool, a string or any other non-number.
        ValueError: for NaN, inf, or a value out of bounds.

    Example:

    >>> import numpy as np
    >>> check_number("MuSchedule", "mu0", np.float32(0.5), low=0,
    ...              low_inclusive=False)
    0.5
    >>> check_number("MuSchedule", "mu0", 0.0, low=0, low_inclusive=False)
    Traceback (most recent call last):
    ...
    ValueError: MuSchedule requires mu0 > 0. Received: mu0=0.0
    """
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner} requires {name} to be a number. Received: "
            f"{name}={value!r} of type {type(value).__name__}")
    number = float(value)
    what = _bounds(low, low_inclusive, high, high_inclusive)
    if not math.isfinite(number):
        raise ValueError(
            f"{owner} requires {name} to be finite"
            f"{' and ' + what if what else ''}. Received: {name}={number}")
    low_bad = low is not None and (
        number < low if low_inclusive else number <= low)
    high_bad = high is not None and (
        number > high if high_inclusive else number >= high)
    if low_bad or high_bad:
        raise ValueError(
            f"{owner} requires {name} {what}. Received: {name}={number}")
    return number


def _bounds(low, low_inclusive, high, high_inclusive):
    if low is not None and high is not None:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {low}"
    if high is not None:
        return f"{'<=' if high_inclusive else '<'} {high}"
    return ""


def check_int(owner, name, value, *, low=None):
    """An integer (Python or NumPy) >= `low`, as a Python int.

    Args:
        owner: Who checks (named in the message).
        name: The argument's name.
        value: The value to check.
        low: Smallest allowed value, or None.

    Returns:
        `int(value)`.

    Raises:
        TypeError: for a bool, a float or any other non-integer.
        ValueError: for a value below `low`.

    Example:

    >>> import numpy as np
    >>> check_int("MuSchedule", "steps", np.int64(3), low=1)
    3
    >>> check_int("MuSchedule", "steps", 0, low=1)
    Traceback (most recent call last):
    ...
    ValueError: MuSchedule requires steps >= 1. Received: steps=0
    """
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{owner} requires {name} to be an int. Received: "
            f"{name}={value!r} of type {type(value).__name__}")
    number = int(value)
    if low is not None and number < low:
        raise ValueError(
            f"{owner} requires {name} >= {low}. Received: {name}={number}")
    return number


def check_bool(owner, name, value):
    """A bool (Python or NumPy), as a Python bool.

    Args:
        owner: Who checks (named in the message).
        name: The argument's name.
        value: The value to check.

    Returns:
        `bool(value)`.

    Raises:
        TypeError: for anything that is not a bool (strings such as "no",
            numbers, None).

    Example:

    >>> check_bool("MuSchedule", "strict", False)
    False
    >>> check_bool("MuSchedule", "strict", "no")
    Traceback (most recent call last):
    ...
    TypeError: MuSchedule requires strict to be a bool (True or False). Received: strict='no' of type str
    """
    if not _is_bool(value):
        raise TypeError(
            f"{owner} requires {name} to be a bool (True or False). "
            f"Received: {name}={value!r} of type {type(value).__name__}")
    return bool(value)
