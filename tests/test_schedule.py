import math

import pytest

import lc_keras as lc


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
