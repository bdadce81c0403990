import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import lc_keras as lc
from conftest import mlp
from conftest import classification_data
from conftest import image_data
from conftest import sequence_net


def functional(d=12, classes=3):
    inputs = keras.Input((d,))
    h = keras.layers.Dense(16, activation="relu", name="f1")(inputs)
    h2 = keras.layers.Dense(8, activation="relu", name="f2")(h)
    h = keras.layers.Concatenate()([h, h2])
    outputs = keras.layers.Dense(classes, activation="softmax", name="f3")(h)
    return keras.Model(inputs, outputs, name="functional")


def nested(d=12, classes=3):
    inner = keras.Sequential([
        keras.Input((d,)),
        keras.layers.Dense(16, activation="relu", name="inner_dense"),
    ], name="inner")
    inputs = keras.Input((d,))
    outputs = keras.layers.Dense(classes, activation="softmax",
                                 name="outer_dense")(inner(inputs))
    return keras.Model(inputs, outputs, name="nested")


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1 = keras.layers.Dense(16, activation="relu")
        self.d2 = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.d2(self.d1(x))


def subclassed(d=12, classes=3):
    model = Subclassed(name="subclassed")
    model(np.zeros((1, d), "float32"))
    return model


def convnet(classes=3):
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv_1"),
        keras.layers.DepthwiseConv2D(3, name="dw"),
        keras.layers.Flatten(),
        keras.layers.Dense(classes, activation="softmax", name="head"),
    ], name="convnet")


@keras.saving.register_keras_serializable(package="lc_keras_tests")
class LCNet(lc.LCModel):
    """A model written as a subclass of LCModel."""

    def __init__(self, k=2, **kwargs):
        super().__init__(compression=lc.AdaptiveQuantization(k), **kwargs)
        self.k = k
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.out = keras.layers.Dense(3, activation="softmax")

    def call(self, x, training=None):
        return self.out(self.hidden(x))

    def get_config(self):
        return {"k": self.k, "name": self.name}


def compile_(model, lr=0.05):
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def schedule(steps=3, epochs_per_step=1, mu0=1e-2, growth=3.0):
    return lc.MuSchedule(mu0=mu0, growth=growth, steps=steps,
                         epochs_per_step=epochs_per_step)


def assert_quantized(model, q, k):
    state = model.compression_state()
    assert state
    plain = {v.path: v for v in q.weights}
    kernels = [v for v in q.weights if "kernel" in v.path
               or "embeddings" in v.path]
    assert len(kernels) == len(state)
    for v in kernels:
        assert len(np.unique(v.numpy())) <= k, v.path
    for v in q.weights:
        if "bias" in v.path:
            assert len(np.unique(v.numpy())) > k  # biases stay float
    assert plain  # a plain model with weights
    assert not isinstance(q, lc.LCModel)


@pytest.mark.parametrize("build", [mlp, functional, nested, subclassed],
                         ids=["sequential", "functional", "nested",
                              "subclassed"])
def test_wrap_fit_gives_quantized_model(build):
    x, y = classification_data()
    model = compile_(lc.LCModel(build(), compression=lc.AdaptiveQuantization(2)))
    sched = schedule()
    history = model.fit(x, y, epochs=sched.total_epochs, batch_size=32,
                        validation_data=(x, y), callbacks=[sched], verbose=0)
    for key in ("lc_penalty", "lc_mu", "lc_step", "val_accuracy"):
        assert key in history.history, key
    assert any(k.startswith("lc_distortion/") for k in history.history)
    np.testing.assert_allclose(history.history["lc_mu"],
                               [1e-2, 3e-2, 9e-2], rtol=1e-5)
    q = model.quantized_model()
    assert_quantized(model, q, 2)
    # The quantized model computes what the LCModel evaluates.
    np.testing.assert_allclose(q.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert model.c_steps == 1 + sched.steps


def test_conv_and_depthwise_fit():
    x, y = image_data()
    model = compile_(lc.LCModel(convnet(), compression={
        "conv_1": lc.ScaledTernaryQuantization(),
        "dw": lc.AdaptiveQuantization(4),
        keras.layers.Dense: lc.BinaryQuantization(),
    }))
    sched = schedule()
    model.fit(x, y, epochs=sched.total_epochs, batch_size=16,
              callbacks=[sched], verbose=0)
    state = model.compression_state()
    kinds = {q.layer_name: q.kind for q in state.values()}
    assert kinds == {"conv_1": "ScaledTernaryQuantization",
                     "dw": "AdaptiveQuantization",
                     "head": "BinaryQuantization"}
    q = model.quantized_model()
    layers = {layer.name: layer for layer in q.layers}
    assert len(np.unique(layers["conv_1"].kernel.numpy())) <= 3
    assert len(np.unique(layers["dw"].kernel.numpy())) <= 4
    assert set(np.unique(layers["head"].kernel.numpy())) <= {-1.0, 1.0}


def test_subclass_of_lcmodel_fit_and_quantized_model():
    x, y = classification_data()
    model = compile_(LCNet(k=2))
    sched = schedule()
    model.fit(x, y, epochs=sched.total_epochs, batch_size=32,
              callbacks=[sched], verbose=0)
    q = model.quantized_model()
    assert_quantized(model, q, 2)
    np.testing.assert_allclose(q.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)


def test_per_channel_and_shared_codebooks():
    x, y = classification_data()
    model = compile_(lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2, per_channel=True),
        "dense_2": lc.AdaptiveQuantization(3),
    }))
    model.direct_compression()
    state = model.compression_state()
    q1 = state["dense_1/kernel"]
    assert q1.codebook.shape == (16, 2) and q1.channel_axes == (1,)
    kernel = q1.values()
    for j in range(16):
        assert len(np.unique(kernel[:, j])) <= 2
    assert len(np.unique(kernel)) > 2

    shared = compile_(lc.LCModel(mlp(), compression={
        "dense_*": lc.AdaptiveQuantization(2, shared=True)}))
    sched = schedule(steps=2)
    shared.fit(x, y, epochs=sched.total_epochs, callbacks=[sched], verbose=0)
    state = shared.compression_state()
    groups = {q.group for q in state.values()}
    assert len(groups) == 1
    q = shared.quantized_model()
    values = np.concatenate([v.numpy().ravel() for v in q.weights
                             if "kernel" in v.path])
    assert len(np.unique(values)) <= 2


def test_direct_compression_equals_c_step_of_reference():
    net = mlp()
    reference = [w.numpy().copy() for w in net.weights]
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(4))
    model.direct_compression()
    state = model.compression_state()
    kernel = reference[0]
    codebook, indices = lc.AdaptiveQuantization(4).project(
        tf.constant(kernel.reshape(1, -1)))
    np.testing.assert_allclose(state["dense_1/kernel"].codebook,
                               codebook.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(
        state["dense_1/kernel"].indices.ravel(), indices.numpy().ravel())
    # DC leaves the weights alone and the multipliers at zero.
    for before, after in zip(reference, net.weights):
        np.testing.assert_array_equal(before, after.numpy())
    for lam in [k.multipliers for k in model.lc_state.kernels]:
        assert not np.any(lam.numpy())


def test_quadratic_penalty_keeps_lambda_zero():
    x, y = classification_data()
    model = compile_(lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2),
                                penalty="quadratic"))
    sched = schedule()
    model.fit(x, y, epochs=sched.total_epochs, callbacks=[sched], verbose=0)
    for lam in [k.multipliers for k in model.lc_state.kernels]:
        assert not np.any(lam.numpy())


def test_distortion_goes_to_zero_as_mu_grows():
    x, y = classification_data(n=128)
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    sched = lc.MuSchedule(mu0=1e-2, growth=3.0, steps=8, epochs_per_step=1,
                          lr_decay=None)
    history = model.fit(x, y, epochs=sched.total_epochs, batch_size=16,
                        callbacks=[sched], verbose=0)
    d = np.array(history.history["lc_distortion/dense_1/kernel"])
    assert d[-1] < 1e-3 * d[0]
    assert d[-1] < 0.1 * d[-3]


def test_evaluate_quantized_by_default_and_continuous_on_request():
    x, y = classification_data()
    model = compile_(lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2)))
    model.direct_compression()
    q = compile_(model.quantized_model())
    quantized_loss = q.evaluate(x, y, verbose=0)[0]
    continuous_loss = model.net.evaluate(x, y, verbose=0)[0] \
        if model.net.compiled else None
    assert np.isclose(model.evaluate(x, y, verbose=0)[0], quantized_loss,
                      rtol=1e-5)
    loss_c = model.evaluate(x, y, verbose=0, quantized=False)[0]
    assert not np.isclose(loss_c, quantized_loss, rtol=1e-3)
    assert continuous_loss is None
    # the flag is restored after a one-off override
    assert model.quantized_evaluation
    model.quantized_evaluation = False
    assert np.isclose(model.evaluate(x, y, verbose=0)[0], loss_c, rtol=1e-6)


def test_evaluate_before_any_c_step_is_an_error():
    x, y = classification_data()
    model = compile_(lc.LCModel(mlp()))
    with pytest.raises(ValueError, match="not run a C step"):
        model.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match="not run a C step"):
        model.compression_state()


def test_embedding_is_compressed():
    model = keras.Sequential([
        keras.Input((5,), dtype="int32"),
        keras.layers.Embedding(20, 4, name="emb"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2, name="out"),
    ])
    lcm = lc.LCModel(model, compression={"emb": lc.AdaptiveQuantization(3),
                                         "out": None})
    lcm.direct_compression()
    state = lcm.compression_state()
    assert list(state) == ["emb/embeddings"]
    assert len(np.unique(lcm.quantized_model().get_layer("emb")
                         .embeddings.numpy())) <= 3


def test_separable_conv_kernels_are_both_compressed():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.SeparableConv2D(4, 3, name="sep"),
    ])
    lcm = lc.LCModel(model, compression=lc.AdaptiveQuantization(
        2, per_channel=True))
    lcm.direct_compression()
    state = lcm.compression_state()
    assert sorted(q.attribute for q in state.values()) == [
        "depthwise_kernel", "pointwise_kernel"]
    assert state["sep/depthwise_kernel"].codebook.shape == (
        3, 2)
    assert state["sep/pointwise_kernel"].codebook.shape == (
        4, 2)


def _run(model, x, y, epochs, initial_epoch=0, callbacks=()):
    sched = schedule(steps=4)
    model.fit(x, y, epochs=sched.total_epochs, initial_epoch=initial_epoch,
              batch_size=32, shuffle=False, callbacks=[sched, *callbacks],
              verbose=0)
    return sched


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


def test_keras_round_trip_mid_run_continues_identically(tmp_path):
    x, y = classification_data()
    keras.utils.set_random_seed(1)
    full = compile_(lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2)))
    initial = [w.numpy() for w in full.net.weights]
    _run(full, x, y, 4)

    keras.utils.set_random_seed(1)
    net = mlp()
    net.set_weights(initial)
    part = compile_(lc.LCModel(net, compression=lc.AdaptiveQuantization(2)))
    # Stop after epoch index 1 (end of LC step 1), save, reload, go on.
    sched = schedule(steps=4)
    part.fit(x, y, epochs=sched.total_epochs, batch_size=32, shuffle=False,
             callbacks=[sched, _StopAfter(1)], verbose=0)
    path = os.path.join(tmp_path, "mid.keras")
    part.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, lc.LCModel)
    assert loaded.c_steps == part.c_steps == 3
    _run(loaded, x, y, 4, initial_epoch=2)

    final_full = full.compression_state()
    final_loaded = loaded.compression_state()
    for key in final_full:
        np.testing.assert_allclose(final_loaded[key].codebook,
                                   final_full[key].codebook, atol=1e-6)
        np.testing.assert_array_equal(final_loaded[key].indices,
                                      final_full[key].indices)
    for a, b in zip(full.net.weights, loaded.net.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_subclass_round_trip(tmp_path):
    x, y = classification_data()
    model = compile_(LCNet(k=3))
    sched = schedule(steps=2)
    model.fit(x, y, epochs=sched.total_epochs, callbacks=[sched], verbose=0)
    path = os.path.join(tmp_path, "net.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, LCNet)
    a, b = model.compression_state(), loaded.compression_state()
    assert len(a) == len(b) == 2
    for qa, qb in zip(a.values(), b.values()):
        np.testing.assert_array_equal(qa.indices, qb.indices)
        np.testing.assert_array_equal(qa.codebook, qb.codebook)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               loaded.predict(x, verbose=0), atol=1e-6)


def test_wrapping_an_unbuilt_model_is_an_error():
    net = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="unbuilt model"):
        lc.LCModel(net)


def test_wrapping_a_non_model_is_a_type_error():
    with pytest.raises(TypeError, match="keras.Model"):
        lc.LCModel(keras.layers.Dense(3))


def test_bad_penalty_mode():
    with pytest.raises(ValueError, match="penalty"):
        lc.LCModel(mlp(), penalty="l1")


def test_nan_weights_are_refused_with_the_layer_name():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    kernel = model.compressed_variables()["dense_2/kernel"]
    value = kernel.numpy()
    value[0, 0] = np.nan
    kernel.assign(value)
    with pytest.raises(ValueError, match="dense_2"):
        model.direct_compression()
    assert not model.compression_initialized


def test_schedule_requires_an_lcmodel():
    x, y = classification_data()
    plain = compile_(mlp())
    with pytest.raises(TypeError, match="LCModel"):
        plain.fit(x, y, epochs=3, callbacks=[schedule()], verbose=0)


def test_schedule_epoch_mismatch_is_an_error_unless_not_strict():
    x, y = classification_data()
    model = compile_(lc.LCModel(mlp()))
    with pytest.raises(ValueError, match="epochs=2"):
        model.fit(x, y, epochs=2, callbacks=[schedule()], verbose=0)
    loose = lc.MuSchedule(mu0=1e-2, growth=3.0, steps=3, epochs_per_step=2,
                          strict=False)
    history = model.fit(x, y, epochs=3, callbacks=[loose], verbose=0)
    # DC + one C step at the end of step 0 + a final C step after epoch 3.
    assert model.c_steps == 3
    assert history.history["lc_step"] == [0, 0, 1]


def test_c_step_before_mu_is_set_gives_no_nan():
    # μ starts at 0 until a schedule (or the user) sets it; λ/μ must not be
    # 0/0 in a C step run by hand before that.
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    model.c_step()
    for q in model.compression_state().values():
        assert np.all(np.isfinite(q.codebook))


# The L step's penalty: proximal (default) and gradient steps; feedback ----


def one_step_expectation(model, x, y, lr, mu):
    """w after one SGD step on the loss, then the exact proximal step."""
    refs = [r for g in model.lc_state.groups for r in g.kernels]
    anchors = {r.path: a.numpy() for r, a in zip(refs, [k.anchor for k in model.lc_state.kernels])}
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, model.net(x, training=True)))
    variables = [r.variable for r in refs]
    grads = tape.gradient(loss, variables)
    c = lr * mu
    return {r.path: (r.variable.numpy() - lr * g.numpy() + c * anchors[r.path])
            / (1 + c) for r, g in zip(refs, grads)}


@pytest.mark.parametrize("penalty, rate", [
    ("augmented", "float"), ("feedback", "float"), ("quadratic", "float"),
    ("feedback", "schedule")])
def test_proximal_step_is_exact(penalty, rate):
    x, y = classification_data(n=32)
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2),
                       penalty=penalty)
    # A Keras schedule: the step uses its value at iteration 0 (0.1), not
    # the one after the optimizer's update (0.05).
    lr = 0.1 if rate == "float" else \
        keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.1, 0.05])
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    model.direct_compression()
    model.mu = 0.5
    # A nonzero λ, so that the anchors of the penalties differ.
    for lam in [k.multipliers for k in model.lc_state.kernels]:
        lam.assign(tf.fill(lam.shape, 0.01))
    model.c_step(update_multipliers=False)
    model.mu = 3.0
    expected = one_step_expectation(model, x, y, lr=0.1, mu=3.0)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for path, variable in model.compressed_variables().items():
        np.testing.assert_allclose(variable.numpy(), expected[path],
                                   rtol=1e-5, atol=1e-7)


def test_default_penalty_and_step():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    assert model.penalty == "feedback" and model.penalty_step == "proximal"


def test_gradient_and_proximal_agree_for_small_steps():
    """For lr·μ → 0 the proximal step is the penalty's gradient step."""
    x, y = classification_data(n=64)
    runs = {}
    for step in ("proximal", "gradient"):
        keras.utils.set_random_seed(0)
        model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2),
                           penalty_step=step)
        model.compile(keras.optimizers.SGD(0.01),
                      "sparse_categorical_crossentropy")
        schedule = lc.MuSchedule.for_budget(2, steps=2, mu0=1e-3,
                                            mu_end=1e-2)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False,
                  callbacks=[schedule], verbose=0)
        runs[step] = [v.numpy() for v in
                      model.compressed_variables().values()]
    for a, b in zip(runs["proximal"], runs["gradient"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_penalty_step():
    with pytest.raises(ValueError, match="penalty_step to be one of "
                       "\\('proximal', 'gradient'\\). Received: "
                       "penalty_step='prox'"):
        lc.LCModel(mlp(), penalty_step="prox")


def test_penalty_step_is_saved(tmp_path):
    model = lc.LCModel(mlp(), penalty="feedback", penalty_step="gradient")
    model.direct_compression()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert (loaded.penalty, loaded.penalty_step) == ("feedback", "gradient")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "schedule"])
def test_for_budget_with_any_optimizer(optimizer):
    """μ follows the optimizer's first learning rate; the run is finite and
    ends on the codebooks."""
    x, y = classification_data(n=64)
    make = {
        "sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9,
                                            nesterov=True),
        "adam": lambda: keras.optimizers.Adam(1e-3),
        "adamw": lambda: keras.optimizers.AdamW(1e-3),
        "schedule": lambda: keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(2e-3, 16)),
    }[optimizer]
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.compile(make(), "sparse_categorical_crossentropy")
    lr0 = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    schedule = lc.MuSchedule.for_budget(4, step_batches=3)
    history = model.fit(x, y, batch_size=16, epochs=schedule.total_epochs,
                        callbacks=[schedule], verbose=0)
    grid = schedule.grid(4, lr0)
    assert history.history["lc_mu"][-1] == pytest.approx(grid.mu_end,
                                                         rel=1e-6)
    assert grid.mu_end * lr0 == pytest.approx(0.3)
    assert model.c_steps == 1 + grid.steps
    for w in model.compressed_variables().values():
        assert np.all(np.isfinite(w.numpy()))
    q = model.quantized_model()
    assert len(np.unique(q.get_layer("dense_1").kernel.numpy())) <= 2


# Kernels found as variables: attention, RNNs, custom layers (issue 12) -----


def test_attention_rnn_and_custom_kernels_train_quantize_and_reload(
        tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 5, 8)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64)
    model = lc.LCModel(sequence_net(), compression=lc.AdaptiveQuantization(2))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    schedule = lc.MuSchedule.for_budget(1, step_batches=1)
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[schedule], verbose=0)
    state = model.compression_state()
    assert len(state) == 15
    q = model.quantized_model()
    for path, variable in model.compressed_variables().items():
        assert len(np.unique(state[path].values())) <= 2
    np.testing.assert_allclose(q.predict(x, verbose=0),
                               model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "seq.keras")
    model.save(path)
    loaded = lc.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    # (Sublayers a custom layer creates without a name are renamed by
    # Keras when the file is loaded, so compare in order.)
    for kernel, saved in zip(loaded.compression_state().values(),
                             state.values()):
        np.testing.assert_array_equal(kernel.indices, saved.indices)


def test_large_float_weights_are_named_in_a_warning():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(64, name="wide")(inputs)
    outputs = keras.layers.Dense(2, name="head")(h)
    net = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match=r"leaves 2 weight\(s\) of more than "
                      r"1% of the model's 450 weights float: "
                      r"\['wide/kernel \(4, 64\)', 'wide/bias \(64,\)'\]"):
        lc.LCModel(net, compression={"head": lc.AdaptiveQuantization(2)})


def test_proximal_step_logs_the_penalty_it_leaves():
    # One batch: the logged penalty is that of the weights after the
    # optimizer's update and the proximal step, as lc_penalty() reads it.
    x, y = classification_data(n=64)
    model = compile_(lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2)))
    model.build((None, 12))
    model.direct_compression()
    model.mu = 5.0
    before = float(model.lc_penalty())
    history = model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    after = float(model.lc_penalty())
    assert after != pytest.approx(before)
    assert history.history["lc_penalty"][0] == pytest.approx(after,
                                                             rel=1e-5)
