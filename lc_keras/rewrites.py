"""Rewrites the exporter applies while it traces a model.

The TFLite file of `lc_keras.export_tflite` decodes its kernels in the graph,
so the converter sees them as runtime tensors. Two things that a float
conversion gets for free then need help, and this module gives it, while the
model is traced (the model itself is left as it was):

* Recurrent layers (`keras.layers.LSTM`, `GRU`, `SimpleRNN`, also inside
  `Bidirectional`) run a `while` loop over a `TensorList`, which the
  converter lowers to builtin ops only when the batch size is static.
  `unrolled_rnns` traces them unrolled instead (their `unroll` setting), so
  the file keeps a dynamic batch; a layer over sequences of unknown length
  cannot unroll, and then the exporter traces it as a loop with a batch of 1
  (`is_unroll_error`, `with_batch`).
* Inference-time batch normalisation after a convolution or a dense layer
  (`BatchNormFolds`). A float conversion folds the normalisation into the
  constant kernel and bias; a decoded kernel is not a constant, so the file
  would normalise the activations on every invoke. The exporter instead
  multiplies the decoded kernel by the per-channel scale (once, on the
  weights: `kernel_scale`), adds the shift to the bias (`bias_values`) and
  traces the normalisation layer as the identity (`BatchNormFolds.apply`),
  so the expanded file (`lc_keras.expand_tflite`) has the ops of the float
  conversion. The codebook and the packed indices are not touched: the
  scale multiplies the decoded values.
"""

import contextlib
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from lc_keras import spec as spec_lib

# ---------------------------------------------------------------------------
# Recurrent layers
# ---------------------------------------------------------------------------


def _rnn_layers(keras_model):
    return [layer for layer, _, _ in spec_lib.owned_layers(keras_model)
            if isinstance(layer, keras.layers.RNN)]


@contextlib.contextmanager
def unrolled_rnns(keras_model):
    """Traces every recurrent layer of a model unrolled, then restores it.

    Args:
        keras_model: A `keras.Model`.

    Yields:
        The number of recurrent layers set to unroll.

    Example:

    >>> import keras
    >>> net = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(2)])
    >>> with unrolled_rnns(net) as count:
    ...     count, net.layers[0].unroll
    (1, True)
    >>> net.layers[0].unroll
    False
    """
    layers = _rnn_layers(keras_model)
    before = [layer.unroll for layer in layers]
    try:
        for layer in layers:
            layer.unroll = True
        yield len(layers)
    finally:
        for layer, unroll in zip(layers, before):
            layer.unroll = unroll


def is_unroll_error(error):
    """Whether `error` is Keras refusing to unroll over an unknown length.

    Example:

    >>> is_unroll_error(ValueError("Cannot unroll a RNN if the time "
    ...                            "dimension is undefined."))
    True
    """
    return isinstance(error, ValueError) and "unroll" in str(error)


def with_batch(signature, batch):
    """`signature` (a `tf.TensorSpec` or a nest of them) with a static batch.

    Args:
        signature: The input signature.
        batch: The batch size to set where it is unknown.

    Returns:
        The same nest, every spec of unknown batch size given `batch`.

    Example:

    >>> import tensorflow as tf
    >>> with_batch(tf.TensorSpec((None, None, 8)), 1).shape
    TensorShape([1, None, 8])
    """
    def fix(spec):
        shape = spec.shape
        if shape.rank and shape[0] is None:
            shape = tf.TensorShape([batch]).concatenate(shape[1:])
        return tf.TensorSpec(shape, spec.dtype, name=spec.name)

    return tf.nest.map_structure(fix, signature)


# ---------------------------------------------------------------------------
# Batch normalisation folding
# ---------------------------------------------------------------------------


def _foldable_kernel(layer):
    """`(attribute, kernel axes of the output channel)` of a layer whose
    output channel is its output's last axis, or None."""
    L = keras.layers
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return "kernel", (-2, -1)
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return "pointwise_kernel", (-1,)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose,
                          L.Conv3DTranspose)):
        return None
    if isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)):
        return "kernel", (-1,)
    return None


@dataclasses.dataclass(frozen=True)
class Fold:
    """One batch normalisation folded into the layer before it.

    Attributes:
        layer: The convolution or dense layer.
        norm: The `keras.layers.BatchNormalization` after it.
        kernel: The layer's compressed kernel variable.
        scale: float32 per-channel scale, broadcastable to the kernel
            (Keras layout).
        shift: float32 per-channel shift, added to the layer's bias (or,
            without a bias, after the layer).

    Example:

    >>> import keras, numpy as np
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> fold = Fold(dense, keras.layers.BatchNormalization(), dense.kernel,
    ...             np.ones((1, 2), np.float32), np.zeros(2, np.float32))
    >>> fold.bias_value().tolist()
    [0.0, 0.0]
    """

    layer: keras.layers.Layer
    norm: keras.layers.Layer
    kernel: keras.Variable
    scale: np.ndarray
    shift: np.ndarray

    def bias_value(self):
        """The folded bias (`bias·scale + shift`), or None without a bias."""
        bias = getattr(self.layer, "bias", None)
        if bias is None:
            return None
        value = keras.ops.convert_to_numpy(bias.value).astype(np.float64)
        return (value * self.scale.reshape(-1) + self.shift).astype(
            np.float32)


def _norm_terms(norm, channels):
    """`(scale, shift)` of an inference-time batch normalisation."""
    def value(variable, default):
        if variable is None:
            return np.full(channels, default, np.float64)
        return keras.ops.convert_to_numpy(variable.value).astype(
            np.float64).reshape(-1)

    gamma = value(norm.gamma if norm.scale else None, 1.0)
    beta = value(norm.beta if norm.center else None, 0.0)
    scale = gamma / np.sqrt(value(norm.moving_variance, 1.0) + norm.epsilon)
    shift = beta - value(norm.moving_mean, 0.0) * scale
    return scale, shift


def _candidate(layer, compressed):
    """`(attribute, axes)` if `layer` can take a folded normalisation."""
    found = _foldable_kernel(layer)
    if found is None:
        return None
    attribute, _ = found
    kernel = getattr(layer, attribute, None)
    if (kernel is None or id(kernel) not in compressed
            or getattr(layer, "data_format", "channels_last")
            != "channels_last"
            or getattr(layer.activation, "__name__", "") != "linear"
            or getattr(layer, "lora_enabled", False)
            or layer.dtype_policy.quantization_mode is not None):
        return None
    return found


@contextlib.contextmanager
def _replaced_calls(replacements):
    """Sets `layer.call` of each `(layer, function of the original call)`,
    and puts the original back afterwards."""
    saved = []
    try:
        for layer, make in replacements:
            own = vars(layer).get("call")
            saved.append((layer, own))
            vars(layer)["call"] = make(layer.call)
        yield
    finally:
        for layer, own in reversed(saved):
            if own is None:
                vars(layer).pop("call", None)
            else:
                vars(layer)["call"] = own


class BatchNormFolds:
    """Finds, then folds, the batch normalisations after compressed layers.

    A `keras.layers.BatchNormalization` over the last axis folds into the
    `Dense`, `Conv1D/2D/3D`, `DepthwiseConv1D/2D` or `SeparableConv1D/2D`
    whose output it normalises when that layer has a compressed kernel, a
    linear activation and channels last, each is called once, and nothing
    else reads the layer's output. Which pairs qualify is seen in a trace
    (`discover`), so any model works, functional or subclassed.

    Args:
        keras_model: The model to export.
        compressed: The compressed kernel variables.

    Attributes:
        folds: The `Fold`s found by `discover` (empty before).

    Example:

    >>> import keras, numpy as np, tensorflow as tf
    >>> net = keras.Sequential([keras.Input((4,)),
    ...                         keras.layers.Dense(3, name="dense"),
    ...                         keras.layers.BatchNormalization(name="bn")])
    >>> folds = BatchNormFolds(net, [net.layers[0].kernel])
    >>> trace = tf.function(lambda x: net(x, training=False))
    >>> with folds.discover():
    ...     _ = trace.get_concrete_function(tf.TensorSpec((None, 4)))
    >>> [(f.layer.name, f.norm.name) for f in folds.folds]
    [('dense', 'bn')]
    """

    def __init__(self, keras_model, compressed):
        ids = {id(v) for v in compressed}
        self.folds = ()
        self._layers = {}
        self._norms = []
        for layer, _, _ in spec_lib.owned_layers(keras_model):
            if isinstance(layer, keras.layers.BatchNormalization):
                self._norms.append(layer)
                continue
            found = _candidate(layer, ids)
            if found is not None:
                self._layers[id(layer)] = (layer,) + found

    @contextlib.contextmanager
    def discover(self):
        """Watches one trace of the model; sets `folds` after it."""
        if not self._norms or not self._layers:
            yield
            return
        calls, outputs, seen = {}, {}, []

        def watch_layer(layer):
            def make(original):
                def call(*args, **kwargs):
                    out = original(*args, **kwargs)
                    calls[id(layer)] = calls.get(id(layer), 0) + 1
                    outputs[id(out)] = (layer, out)
                    return out
                return call
            return layer, make

        def watch_norm(norm):
            def make(original):
                def call(inputs, *args, **kwargs):
                    graph = getattr(inputs, "graph", None)
                    before = len(graph.get_operations()) if graph else 0
                    out = original(inputs, *args, **kwargs)
                    calls[id(norm)] = calls.get(id(norm), 0) + 1
                    if graph is not None and id(inputs) in outputs:
                        ops = graph.get_operations()[before:]
                        seen.append((norm, inputs, {id(op) for op in ops}))
                    return out
                return call
            return norm, make

        watched = [watch_layer(layer) for layer, _, _ in self._layers.values()]
        watched += [watch_norm(norm) for norm in self._norms]
        with _replaced_calls(watched):
            yield
        self.folds = tuple(self._folds(calls, outputs, seen))

    def _folds(self, calls, outputs, seen):
        for norm, inputs, ops in seen:
            layer, tensor = outputs[id(inputs)]
            if tensor is not inputs or calls.get(id(layer)) != 1 or \
                    calls.get(id(norm)) != 1:
                continue
            rank = inputs.shape.rank
            if not rank or norm.axis % rank != rank - 1 or not all(
                    id(op) in ops for op in inputs.consumers()):
                continue
            _, attribute, axes = self._layers[id(layer)]
            kernel = getattr(layer, attribute)
            shape = tuple(kernel.shape)
            scale, shift = _norm_terms(norm, int(inputs.shape[-1]))
            broadcast = [1] * len(shape)
            for axis in axes:
                broadcast[axis] = shape[axis]
            yield Fold(layer=layer, norm=norm, kernel=kernel,
                       scale=scale.astype(np.float32).reshape(broadcast),
                       shift=shift.astype(np.float32))

    def kernel_scale(self, variable):
        """The scale (Keras layout) folded into a kernel, or None."""
        for fold in self.folds:
            if fold.kernel is variable:
                return fold.scale
        return None

    def bias_values(self):
        """`[(bias variable, folded value)]` of the folded layers' biases."""
        return [(fold.layer.bias, fold.bias_value()) for fold in self.folds
                if fold.bias_value() is not None]

    @contextlib.contextmanager
    def apply(self):
        """Traces each folded normalisation as the identity (plus the shift,
        for a layer without a bias)."""
        def make_for(fold):
            def make(original):
                shift = None if fold.bias_value() is not None else fold.shift

                def call(inputs, *args, **kwargs):
                    if shift is None:
                        return inputs
                    return keras.ops.add(inputs, shift)
                return call
            return fold.norm, make

        with _replaced_calls([make_for(fold) for fold in self.folds]):
            yield
