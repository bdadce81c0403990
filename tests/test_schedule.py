import doctest
import math

import pytest

import lc_keras as lc
from lc_keras import schedule


def test_total_epochs_and_mu_by_epoch():
    s = lc.MuSchedule(mu0=1e-3, growth=2.0, steps=4, epochs_per_step=3,
                      first_step_epochs=5)
    assert s.total_epochs == 5 + 3 * 3
    assert [s.step_of_epoch(e) for e in range(s.total_epochs)] == \
        [0] * 5 + [1] * 3 + [2] * 3 + [3] * 3
    assert s.mu_at_epoch(0) == pytest.approx(1e-3)
    assert s.mu_at_epoch(5) == pytest.approx(2e-3)
    assert s.mu_at_epoch(13) == pytest.approx(8e-3)
    assert [e for e in range(s.total_epochs) if s.ends_step(e)] == \
        [4, 7, 10, 13]


def test_mu_continues_past_the_last_step():
    s = lc.MuSchedule(mu0=1.0, growth=2.0, steps=2, epochs_per_step=1,
                      strict=False)
    assert s.mu_at_epoch(5) == pytest.approx(32.0)


def test_default_schedule():
    s = lc.MuSchedule()
    assert s.total_epochs == 60
    assert s.mu_at_epoch(59) == pytest.approx(1e-4 * 1.4 ** 29)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mu0": 0.0}, ValueError, "mu0 > 0. Received: mu0=0.0"),
    ({"mu0": -1e-3}, ValueError, "mu0 > 0"),
    ({"mu0": math.nan}, ValueError, "mu0"),
    ({"mu0": math.inf}, ValueError, "mu0"),
    ({"mu0": "1e-3"}, TypeError, "mu0 to be a number"),
    ({"growth": 0.9}, ValueError, "growth >= 1. Received: growth=0.9"),
    ({"growth": math.inf}, ValueError, "growth"),
    ({"steps": 0}, ValueError, "steps >= 1. Received: steps=0"),
    ({"steps": 2.0}, TypeError, "steps to be an int"),
    ({"epochs_per_step": 0}, ValueError, "epochs_per_step >= 1"),
    ({"first_step_epochs": 0}, ValueError, "first_step_epochs >= 1"),
    ({"lr_decay": 0.0}, ValueError, "lr_decay"),
    ({"lr_decay": 1.5}, ValueError, "lr_decay in \\(0, 1\\]"),
    ({"lr_decay": math.nan}, ValueError, "lr_decay"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        lc.MuSchedule(**kwargs)


def test_config_round_trip():
    s = lc.MuSchedule(mu0=2e-4, growth=1.2, steps=7, epochs_per_step=3,
                      first_step_epochs=6, lr_decay=None, strict=False)
    t = lc.MuSchedule(**s.get_config())
    assert t.get_config() == s.get_config()


# MuSchedule.for_budget: the batch grid -------------------------------------


def test_for_budget_grid_arithmetic():
    s = lc.MuSchedule.for_budget(3, step_batches=4, pull=(1e-2, 1.0))
    assert s.total_epochs == 3
    g = s.grid(steps_per_epoch=10, learning_rate=0.1)
    # ceil(30 / 4) = 8 L steps; the ends split the 30 batches evenly and
    # the last C step runs after the last batch of the budget.
    assert g.steps == 8 and g.total_batches == 30
    ends = [g.end(k) for k in range(g.steps)]
    assert ends == [round((k + 1) * 30 / 8) for k in range(8)]
    assert ends[-1] == 30
    # μ·lr0 runs from pull[0] to pull[1], geometrically.
    mus = [g.mu(k) for k in range(g.steps)]
    assert mus[0] == pytest.approx(0.1) and mus[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in zip(mus, mus[1:])]
    assert ratios == pytest.approx([100 ** (1 / 7)] * 7)
    # Every batch belongs to the L step whose end is the first one after it.
    for t in range(30):
        k = g.step_of_batch(t)
        assert (k == 0 or ends[k - 1] <= t) and t < ends[k]


def test_for_budget_steps_and_absolute_mu():
    s = lc.MuSchedule.for_budget(2, steps=3, mu0=1e-3, mu_end=1e-1)
    g = s.grid(steps_per_epoch=5, learning_rate=123.0)  # lr unused
    assert [g.end(k) for k in range(3)] == [3, 7, 10]
    assert [g.mu(k) for k in range(3)] == pytest.approx([1e-3, 1e-2, 1e-1])
    # Past the budget (strict=False runs): same mean length, same growth.
    assert g.end(3) == 13 and g.mu(3) == pytest.approx(1.0)
    assert g.step_of_batch(10) == 3 and g.step_of_batch(12) == 3


def test_for_budget_relative_mu_follows_the_learning_rate():
    s = lc.MuSchedule.for_budget(1, steps=2)
    sgd = s.grid(steps_per_epoch=4, learning_rate=0.1)
    adam = s.grid(steps_per_epoch=4, learning_rate=1e-3)
    assert sgd.mu0 * 0.1 == pytest.approx(adam.mu0 * 1e-3)
    assert sgd.mu_end * 0.1 == pytest.approx(adam.mu_end * 1e-3)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": 0}, ValueError,
     "for_budget requires epochs >= 1. Received: epochs=0"),
    ({"epochs": 2.5}, TypeError, "epochs to be an int"),
    ({"epochs": "10"}, TypeError, "epochs to be an int"),
    ({"epochs": 3, "step_batches": 0}, ValueError, "step_batches >= 1"),
    ({"epochs": 3, "steps": 0}, ValueError, "steps >= 1"),
    ({"epochs": 3, "pull": (0.0, 1.0)}, ValueError,
     "pull\\[0\\] in \\(0, 1000.0\\]"),
    ({"epochs": 3, "pull": (1.0, 0.1)}, ValueError,
     "pull\\[1\\] in \\[1.0, 1000.0\\]"),
    ({"epochs": 3, "pull": 0.5}, TypeError, "pull to be a pair"),
    ({"epochs": 3, "pull": (0.1, "x")}, TypeError, "pull\\[1\\] to be a"),
    ({"epochs": 3, "mu0": 1e-3}, ValueError, "mu0 and mu_end together"),
    ({"epochs": 3, "mu0": 1.0, "mu_end": 0.5}, ValueError, "mu_end >= 1.0"),
    ({"epochs": 3, "mu0": math.nan, "mu_end": 1.0}, ValueError, "mu0"),
    ({"epochs": 3, "mu0": 1.0, "mu_end": 1e39}, ValueError, "float32"),
])
def test_for_budget_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        lc.MuSchedule.for_budget(**kwargs)


def test_for_budget_accepts_numpy_numbers():
    import numpy as np

    s = lc.MuSchedule.for_budget(np.int64(4), steps=np.int32(2),
                                 pull=(np.float32(0.01), np.float64(1.0)))
    assert s.total_epochs == 4 and s.budget["steps"] == 2


def test_for_budget_too_short_for_its_steps():
    s = lc.MuSchedule.for_budget(1, steps=9)
    with pytest.raises(ValueError, match="steps <= the batches of the "
                       "budget \\(1 epochs × 8 batches = 8\\)"):
        s.grid(steps_per_epoch=8, learning_rate=0.1)


def test_for_budget_takes_no_lr_decay():
    s = lc.MuSchedule.for_budget(3)
    config = s.get_config()
    config["lr_decay"] = 0.9
    with pytest.raises(ValueError, match="takes no lr_decay"):
        lc.MuSchedule(**config)


def test_for_budget_config_round_trip():
    s = lc.MuSchedule.for_budget(7, step_batches=5, pull=(0.02, 0.5),
                                 strict=False)
    t = lc.MuSchedule(**s.get_config())
    assert t.get_config() == s.get_config() and t.total_epochs == 7
    assert t.grid(10, 1e-3) == s.grid(10, 1e-3)


def test_grid_is_for_budget_schedules():
    with pytest.raises(ValueError, match="for_budget"):
        lc.MuSchedule().grid(10, 0.1)


def test_docstring_examples():
    result = doctest.testmod(schedule,
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
