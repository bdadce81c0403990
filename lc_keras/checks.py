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


def check_int(owner, name, value, *, low=None, high=None):
    """An integer (Python or NumPy) in `[low, high]`, as a Python int.

    Args:
        owner: Who checks (named in the message).
        name: The argument's name.
        value: The value to check.
        low: Smallest allowed value, or None.
        high: Largest allowed value, or None.

    Returns:
        `int(value)`.

    Raises:
        TypeError: for a bool, a float or any other non-integer.
        ValueError: for a value below `low` or above `high`.

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
    if high is not None and number > high:
        raise ValueError(
            f"{owner} requires {name} <= {high}. Received: {name}={number}")
    return number


def check_seed(owner, value, name="seed"):
    """A random seed: an integer that fits in int64, as a Python int.

    Args:
        owner: Who checks (named in the message).
        value: The value to check.
        name: The argument's name.

    Returns:
        `int(value)`.

    Raises:
        TypeError: for a bool, a float or any other non-integer.
        ValueError: for a value outside `[-2**63, 2**63 - 1]`.

    Example:

    >>> check_seed("kmeans_1d", 7)
    7
    >>> check_seed("kmeans_1d", 2**63)
    Traceback (most recent call last):
    ...
    ValueError: kmeans_1d requires seed <= 9223372036854775807. Received: seed=9223372036854775808
    """
    return check_int(owner, name, value, low=-(2**63), high=2**63 - 1)


def check_int_interval(owner, names, values, *, low=None, high=None):
    """Two integers `(a, b)` with `low <= a <= b <= high`, as Python ints.

    Args:
        owner: Who checks (named in the message).
        names: The two arguments' names.
        values: The two values to check.
        low: Smallest allowed value, or None.
        high: Largest allowed value, or None.

    Returns:
        `(int(a), int(b))`.

    Raises:
        TypeError: for a value that is not an integer.
        ValueError: for a value out of bounds, or `a > b`.

    Example:

    >>> check_int_interval("PowersOfTwoQuantization",
    ...                    ("min_exponent", "max_exponent"), (1, 0))
    Traceback (most recent call last):
    ...
    ValueError: PowersOfTwoQuantization requires min_exponent <= max_exponent. Received: min_exponent=1, max_exponent=0
    """
    a = check_int(owner, names[0], values[0], low=low, high=high)
    b = check_int(owner, names[1], values[1], low=low, high=high)
    if a > b:
        raise ValueError(
            f"{owner} requires {names[0]} <= {names[1]}. Received: "
            f"{names[0]}={a}, {names[1]}={b}")
    return a, b


def check_choice(owner, name, value, choices):
    """One of a fixed set of values (e.g. a method name), returned as is.

    Args:
        owner: Who checks (named in the message).
        name: The argument's name.
        value: The value to check.
        choices: The allowed values.

    Returns:
        `value`.

    Raises:
        ValueError: for any other value.

    Example:

    >>> check_choice("AdaptiveQuantization", "method", "kmeans",
    ...              ("auto", "lloyd"))
    Traceback (most recent call last):
    ...
    ValueError: AdaptiveQuantization requires method to be one of 'auto', 'lloyd'. Received: method='kmeans'
    """
    if value not in choices:
        raise ValueError(
            f"{owner} requires {name} to be one of "
            f"{', '.join(repr(c) for c in choices)}. "
            f"Received: {name}={value!r}")
    return value


def check_distinct_numbers(owner, name, values, *, max_size=None):
    """A flat, non-empty list of distinct finite float32 numbers.

    Distinctness is checked after rounding to float32, so two values that
    float32 cannot tell apart are refused.

    Args:
        owner: Who checks (named in the message).
        name: The argument's name.
        values: A list (or array) of numbers.
        max_size: Most values allowed, or None.

    Returns:
        The values as a list of Python floats, in the given order.

    Raises:
        TypeError: for something that is not a list of numbers.
        ValueError: for a nested or empty list, too many values, a value that
            is not finite in float32, or a repeated value.

    Example:

    >>> check_distinct_numbers("FixedCodebook", "values", [1, 0.5])
    [1.0, 0.5]
    >>> check_distinct_numbers("FixedCodebook", "values", [1, 1.0])
    Traceback (most recent call last):
    ...
    ValueError: FixedCodebook requires distinct values (in float32). Received: value 1.0 more than once in values=[1, 1.0]
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{owner} requires {name} to be a list of numbers. "
            f"Received: {name}={values!r}"
        ) from None
    if array.ndim != 1:
        raise ValueError(
            f"{owner} requires {name} to be a flat list of numbers. "
            f"Received: {name}={values!r} (shape {array.shape})"
        )
    if array.size == 0:
        raise ValueError(
            f"{owner} requires at least one value. Received: {name}={values!r}"
        )
    if max_size is not None and array.size > max_size:
        raise ValueError(
            f"{owner} requires at most {max_size} values. "
            f"Received: {array.size} values"
        )
    for i, x in enumerate(array):
        if not np.isfinite(x) or abs(x) > np.finfo(np.float32).max:
            raise ValueError(
                f"{owner} requires finite float32 values. Received: "
                f"{name}[{i}]={float(x)!r} in {name}={values!r}"
            )
    unique, counts = np.unique(array.astype(np.float32), return_counts=True)
    if np.any(counts > 1):
        dup = float(unique[np.argmax(counts > 1)])
        raise ValueError(
            f"{owner} requires distinct values (in float32). Received: "
            f"value {dup!r} more than once in {name}={values!r}"
        )
    return [float(x) for x in array]


def check_flags(owner, name, value, size):
    """None, one bool, or a list of `size` bools (one flag per item).

    Args:
        owner: Who checks (named in the message).
        name: The argument's name.
        value: The value to check.
        size: The number of flags a list must hold.

    Returns:
        None, a Python bool, or a list of Python bools.

    Raises:
        TypeError: for something else, or a list holding a non-bool.
        ValueError: for a list of the wrong length.

    Example:

    >>> check_flags("FixedCodebook", "trainable", [True, False], 2)
    [True, False]
    >>> check_flags("FixedCodebook", "trainable", [True], 2)
    Traceback (most recent call last):
    ...
    ValueError: FixedCodebook requires one trainable flag per value (2). Received: trainable=[True] (length 1)
    """
    if value is None or _is_bool(value):
        return value if value is None else bool(value)
    try:
        flags = list(value)
    except TypeError:
        raise TypeError(
            f"{owner} requires {name} to be None, a bool or a list of "
            f"bools. Received: {name}={value!r}"
        ) from None
    if len(flags) != size:
        raise ValueError(
            f"{owner} requires one {name} flag per value ({size}). "
            f"Received: {name}={value!r} (length {len(flags)})"
        )
    for i, flag in enumerate(flags):
        if not _is_bool(flag):
            raise TypeError(
                f"{owner} requires {name} to hold bools. Received: "
                f"{name}[{i}]={flag!r} (of type {type(flag).__name__})"
            )
    return [bool(f) for f in flags]


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
