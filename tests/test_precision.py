"""LC under Keras mixed precision, and with XLA (`jit_compile=True`)."""

import keras
import numpy as np
import pytest

import lc_keras as lc
from conftest import mlp
from conftest import classification_data


def lc_fit(policy="float32", jit_compile=False, lr_decay=0.5):
    """A short LC run: 3 LC steps of 1 epoch, validated on the quantized net.

    The policy is set for building and training, and reset after.
    """
    x, y = classification_data(n=128)
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = lc.LCModel(mlp(), compression={
            "dense_1": lc.AdaptiveQuantization(4),
            "dense_2": lc.ScaledTernaryQuantization()})
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                      "sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=jit_compile)
        schedule = lc.MuSchedule(mu0=1e-2, growth=3.0, steps=3,
                                 epochs_per_step=1, lr_decay=lr_decay)
        history = model.fit(x, y, batch_size=32, epochs=schedule.total_epochs,
                            shuffle=False, validation_data=(x, y),
                            callbacks=[schedule], verbose=0)
        return model, history.history, x
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy, atol", [("mixed_float16", 1e-3),
                                          ("mixed_bfloat16", 1e-2)])
def test_mixed_precision(policy, atol):
    model, history, x = lc_fit(policy)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.net.layers[0].dtype_policy.name == policy
    assert model.net.layers[0].compute_dtype != "float32"
    # Training works; μ and the learning rate follow the schedule, through
    # the LossScaleOptimizer that Keras puts around SGD for float16.
    assert np.all(np.isfinite(history["loss"]))
    np.testing.assert_allclose(history["lc_mu"], [1e-2, 3e-2, 9e-2],
                               rtol=1e-6)
    if policy == "mixed_float16":
        assert isinstance(model.optimizer,
                          keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(
        float(model.optimizer.learning_rate.numpy()), 0.05 * 0.5 ** 2,
        rtol=1e-6)
    # Penalty, targets, multipliers, codebooks: float32.
    assert model.lc_penalty().dtype == "float32"
    for v in model.lc_state.weights:
        assert v.dtype in ("float32", "int32"), v.path
    assert {v.dtype for v in [v for k in model.lc_state.kernels for v in (k.multipliers, k.target)]} == {
        "float32"}
    for kernel in model.compressed_variables().values():
        assert kernel.dtype == "float32"  # the variables stay float32
    # The quantized model: at most K values per kernel, and the predictions
    # of the LCModel (which evaluates Δ(Θ)).
    state = model.compression_state()
    assert all(np.all(np.isfinite(q.codebook)) for q in state.values())
    assert all(q.codebook.dtype == np.float32 for q in state.values())
    q = model.quantized_model()
    layers = {layer.name: layer for layer in q.layers}
    assert len(np.unique(layers["dense_1"].kernel.numpy())) <= 4
    assert len(np.unique(layers["dense_2"].kernel.numpy())) <= 3
    assert layers["dense_1"].dtype_policy.name == policy
    np.testing.assert_allclose(q.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=atol)


def test_jit_compile_matches_graph_mode():
    graph, graph_history, x = lc_fit(jit_compile=False)
    xla, xla_history, _ = lc_fit(jit_compile=True)
    assert xla.jit_compile and not graph.jit_compile
    # μ grows inside the compiled step (it is a variable, not a constant).
    np.testing.assert_allclose(xla_history["lc_penalty"],
                               graph_history["lc_penalty"], rtol=1e-4)
    np.testing.assert_allclose(xla_history["val_loss"],
                               graph_history["val_loss"], rtol=1e-5)
    a, b = graph.compression_state(), xla.compression_state()
    for key in a:
        np.testing.assert_allclose(a[key].codebook, b[key].codebook,
                                   atol=1e-5)
        np.testing.assert_array_equal(a[key].indices, b[key].indices)
    for u, v in zip(graph.net.weights, xla.net.weights):
        np.testing.assert_allclose(u.numpy(), v.numpy(), atol=1e-5)
    np.testing.assert_allclose(xla.predict(x, verbose=0),
                               graph.predict(x, verbose=0), atol=1e-5)
