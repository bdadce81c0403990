"""LCState: its records, the C step's invariants, the penalty and the saved
schedule position, through public names only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lc_keras as lc
from lc_keras import quantized
from lc_keras import state as state_lib
from conftest import mlp

CODEBOOKS = {
    "adaptive": lambda: lc.AdaptiveQuantization(3),
    "adaptive_per_channel": lambda: lc.AdaptiveQuantization(
        2, per_channel=True),
    "binary": lc.BinaryQuantization,
    "scaled_ternary": lc.ScaledTernaryQuantization,
    "scaled_binary_per_channel": lambda: lc.ScaledBinaryQuantization(
        per_channel=True),
    "powers_of_two": lc.PowersOfTwoQuantization,
}


def dense():
    return mlp()


def conv():
    return keras.Sequential([
        keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.Flatten(), keras.layers.Dense(3, name="head")])


def depthwise():
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
        keras.layers.Flatten(), keras.layers.Dense(3, name="head")])


def conv_transpose():
    return keras.Sequential([
        keras.Input((4, 4, 2)),
        keras.layers.Conv2DTranspose(3, 3, name="deconv"),
        keras.layers.Flatten(), keras.layers.Dense(3, name="head")])


LAYERS = {"dense": dense, "conv": conv, "depthwise": depthwise,
          "conv_transpose": conv_transpose}


def moved(model, amount=0.03, seed=0):
    """Moves every compressed kernel off its quantized value."""
    rng = np.random.default_rng(seed)
    for w in model.compressed_variables().values():
        w.assign(w.numpy() + amount * rng.normal(size=w.shape))


@pytest.mark.parametrize("layers", sorted(LAYERS))
@pytest.mark.parametrize("codebook", sorted(CODEBOOKS))
def test_c_step_targets_are_codebook_entries(codebook, layers):
    model = lc.LCModel(LAYERS[layers](), compression=CODEBOOKS[codebook]())
    model.direct_compression()
    model.mu = 0.5
    moved(model)
    model.c_step()
    state = model.lc_state
    results = model.compression_state()
    for k in state.kernels:
        q = results[k.path]
        target = k.target.numpy()
        # Δ(Θ) is codebook[row of the weight, index of the weight] ...
        np.testing.assert_array_equal(target, q.values())
        # ... and every value lies in its row of the codebook.
        rows = np.broadcast_to(
            quantized.channel_rows(q.shape, q.channel_axes), q.shape)
        for r in range(q.groups):
            assert set(np.unique(target[rows == r])) <= set(q.codebook[r])
        assert q.layer_type == type(k.ref.layer).__name__


@pytest.mark.parametrize("codebook", ["adaptive", "binary", "scaled_ternary"])
def test_projecting_a_quantized_net_changes_nothing(codebook):
    """Π(Δ(Θ)) = Δ(Θ): a C step on weights equal to their quantized values
    (λ = 0) is idempotent."""
    model = lc.LCModel(conv(), compression=CODEBOOKS[codebook](),
                       penalty="quadratic")
    model.direct_compression()
    for k in model.lc_state.kernels:
        k.variable.assign(k.target.value)
    before = {k.path: k.target.numpy() for k in model.lc_state.kernels}
    distortions = model.c_step()
    for k in model.lc_state.kernels:
        np.testing.assert_array_equal(k.target.numpy(), before[k.path])
    assert all(d == 0.0 for d in distortions.values())


def test_records_follow_the_groups():
    model = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2, shared=True),
        "dense_2": lc.AdaptiveQuantization(2, shared=True)})
    state = model.lc_state
    # Two spec keys: two shared groups of one kernel each.
    assert [g.group.name for g in state.group_states] == [
        "shared:dense_1", "shared:dense_2"]
    assert [k.path for k in state.kernels] == [
        "dense_1/kernel", "dense_2/kernel"]
    for g in state.group_states:
        assert tuple(g.codebook.shape) == (1, 2)
        for k in g.kernels:
            for v in (k.multipliers, k.target, k.anchor, k.indices):
                assert tuple(v.shape) == tuple(k.variable.shape)
    assert state.c_steps == 0 and not state.initialized


def test_lambda_update_and_penalty_formula():
    for penalty in ("augmented", "feedback"):
        model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2),
                           penalty=penalty)
        model.direct_compression()
        model.mu = 0.5
        moved(model, 0.01)
        kernels = model.lc_state.kernels
        before = [k.multipliers.numpy().copy() for k in kernels]
        model.c_step()
        expected_penalty = 0.0
        for k, lam in zip(kernels, before):
            w, target = k.variable.numpy(), k.target.numpy()
            np.testing.assert_allclose(k.multipliers.numpy(),
                                       lam - 0.5 * (w - target),
                                       rtol=1e-5, atol=1e-7)
            shift = k.multipliers.numpy() / 0.5 if penalty == "augmented" \
                else 0.0
            np.testing.assert_allclose(k.anchor.numpy(), target + shift,
                                       atol=1e-6)
            expected_penalty += 0.25 * np.sum((w - target - shift) ** 2)
        np.testing.assert_allclose(float(model.lc_state.penalty_value()),
                                   expected_penalty, rtol=1e-5)


def test_penalty_gradient_is_mu_times_w_minus_anchor():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    model.mu = 0.3
    moved(model, 0.05)
    kernels = model.lc_state.kernels
    with tf.GradientTape() as tape:
        penalty = model.lc_state.penalty_value()
    grads = tape.gradient(penalty, [k.variable for k in kernels])
    for k, grad in zip(kernels, grads):
        np.testing.assert_allclose(
            grad.numpy(), 0.3 * (k.variable.numpy() - k.anchor.numpy()),
            rtol=1e-5, atol=1e-8)


def test_proximal_step_outside_fit_is_exact():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    model.mu = 2.0
    moved(model)
    state = model.lc_state
    w0 = [k.variable.numpy().copy() for k in state.kernels]
    state.proximal_step(tf.constant(0.1), frozen=(False, True))
    c = 0.1 * 2.0
    first, second = state.kernels
    np.testing.assert_allclose(
        first.variable.numpy(),
        (w0[0] + c * first.anchor.numpy()) / (1 + c), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(second.variable.numpy(), w0[1])


def test_a_non_finite_kernel_assigns_nothing():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    state = model.lc_state
    before = {k.path: (k.target.numpy(), k.indices.numpy())
              for k in state.kernels}
    steps = state.c_steps
    w = state.kernels[1].variable
    w.assign(np.full(w.shape, np.nan, np.float32))
    finite = state.c_step(warm=True, update_multipliers=True,
                          frozen=(False, False))
    assert finite.tolist() == [True, False]
    assert state.c_steps == steps
    for k in state.kernels:
        np.testing.assert_array_equal(k.target.numpy(), before[k.path][0])
        np.testing.assert_array_equal(k.indices.numpy(), before[k.path][1])


def test_set_mu_refreshes_the_augmented_anchor():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2),
                       penalty="augmented")
    model.direct_compression()
    state = model.lc_state
    for k in state.kernels:
        k.multipliers.assign(tf.fill(k.multipliers.shape, 0.2))
    state.set_mu(4.0)
    for k in state.kernels:
        np.testing.assert_allclose(k.anchor.numpy(), k.target.numpy() + 0.05,
                                   atol=1e-7)


def test_schedule_position_and_resume_problems():
    model = lc.LCModel(mlp())
    state = model.lc_state
    assert state.resume_problem(0) is None
    assert "has not started" in state.resume_problem(2)
    model.direct_compression()
    assert state.schedule_phase == state_lib.AT_EPOCH_END
    state.mark_in_epoch()
    assert "middle of epoch 1" in state.resume_problem(0)
    state.mark_epoch_end(3)
    assert (state.schedule_epoch, state.schedule_phase) == (
        3, state_lib.AT_EPOCH_END)
    assert state.resume_problem(3) is None
    assert "initial_epoch=3" in state.resume_problem(1)
    state.mark_closed()
    assert "closed with an extra C step" in state.resume_problem(3)


def test_base_learning_rate_is_recorded_once():
    state = lc.LCModel(mlp()).lc_state
    assert state.base_learning_rate == 0.0
    assert state.record_base_learning_rate(np.float32(0.1)) == \
        pytest.approx(0.1)
    assert state.record_base_learning_rate(0.5) == pytest.approx(0.1)


def test_bad_penalty_is_refused():
    with pytest.raises(ValueError, match="LCState requires penalty to be "
                       "one of .*Received: penalty='l1'"):
        state_lib.LCState(penalty="l1")


def test_state_survives_save_and_load(tmp_path):
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    model.mu = 0.7
    moved(model)
    model.c_step()
    model.lc_state.mark_epoch_end(2)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = lc.load_model(path)
    a, b = model.lc_state, loaded.lc_state
    assert (b.c_steps, b.schedule_epoch) == (a.c_steps, 2)
    assert float(b.mu.numpy()) == pytest.approx(0.7)
    for ka, kb in zip(a.kernels, b.kernels):
        assert ka.path == kb.path
        for va, vb in ((ka.multipliers, kb.multipliers),
                       (ka.target, kb.target), (ka.indices, kb.indices)):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_a_file_stores_the_state_without_the_derived_values(tmp_path):
    """Δ(Θ) and the anchors are rebuilt on load, bit for bit; the indices
    are stored in the smallest unsigned type."""
    import h5py

    model = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2, per_channel=True),
        "dense_2": lc.ScaledTernaryQuantization()}, penalty="augmented")
    model(np.zeros((1, 12), "float32"))  # built, so that it can be saved
    model.direct_compression()
    model.mu = 0.7
    moved(model)
    model.c_step()
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda n, o: names.append((n, o.dtype))
                     if isinstance(o, h5py.Dataset) and "lc_state" in n
                     else None)
    stored = 5 + 2 + 2 * 2 + 1  # counters, codebooks, λ and indices, format
    assert len(names) == stored
    assert sum(dtype == np.uint8 for _, dtype in names) == 2
    other = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2, per_channel=True),
        "dense_2": lc.ScaledTernaryQuantization()}, penalty="augmented")
    other(np.zeros((1, 12), "float32"))
    other.load_weights(path)
    for a, b in zip(model.lc_state.kernels, other.lc_state.kernels):
        for va, vb in ((a.target, b.target), (a.anchor, b.anchor),
                       (a.multipliers, b.multipliers),
                       (a.indices, b.indices)):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_files_of_every_variable_still_load(tmp_path, monkeypatch):
    """Files written before the derived values were left out hold every
    variable of the state, in order: they load as they did."""
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model(np.zeros((1, 12), "float32"))
    model.direct_compression()
    moved(model)
    model.c_step()
    path = str(tmp_path / "old.weights.h5")
    with monkeypatch.context() as m:
        m.setattr(state_lib.LCState, "save_own_variables",
                  keras.layers.Layer.save_own_variables)
        model.save_weights(path)
    other = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    other(np.zeros((1, 12), "float32"))
    other.load_weights(path)
    for a, b in zip(model.lc_state.kernels, other.lc_state.kernels):
        np.testing.assert_array_equal(a.target.numpy(), b.target.numpy())
        np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
