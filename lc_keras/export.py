"""TFLite export that stores integer indices plus a codebook.

Every compressed kernel is written as its codebook indices, `ceil(log2 K)`
bits each, packed into int32 words (`lc_keras.packing`: bit order, TFLite
kernel layout, per-channel offsets), next to its float32 codebook. The graph
built here decodes the words with builtin TFLite ops only, so the file runs
on the stock LiteRT interpreter and is small on disk as written, with no
gzip:

* b in {1, 2, 4, 8}: `BITCAST` the words to bytes, then one `GATHER` of a
  256-row table (each byte value's 8/b codebook values, built at run time
  from the codebook) decodes 8/b weights per byte.
* other b (indices straddle words): `GATHER` the two words of each index,
  `RIGHT_SHIFT` + `FLOOR_MOD`, then `GATHER` the codebook.
* per-channel codebooks add each channel's row offset to the indices before
  the codebook `GATHER`.

Three layouts:

* `"packed"` decodes the kernels on every invoke: smallest memory, slowest.
* `"cached"` decodes them once, on the first invoke, into float resource
  variables (a `CALL_ONCE` initializer sets a flag to 0, an `IF` decodes and
  `ASSIGN_VARIABLE`s the kernels while it is 0); later invokes only
  `READ_VARIABLE` them. The file is larger by the extra subgraphs; resident
  memory holds the float kernels (twice, with the read copies).
* `"native"` stores every kernel whose codebook is an integer grid with a
  scale as LiteRT's own INT2/INT4/INT8 filter with per-channel scales
  (`lc_keras.native`), which the stock interpreter runs as stored with its
  dynamic-range kernels; the other kernels are packed, with a warning.

The interpreter's XNNPACK delegate only takes convolutions whose filter is a
constant, so kernels decoded at run time run on the builtin kernels (see
BENCHMARKS.md for the speeds). `lc_keras.load_interpreter`
(`lc_keras.runtime`) expands the kernels to float constants at load time
instead, and runs at the float model's speed.

How the decoding survives conversion. The TFLite converter constant-folds
any chain of ops whose inputs are all constants back into a float kernel
(small kernels always; every kernel on the SavedModel conversion path). The
decoding therefore takes one runtime int32 that is always zero: the batch
size clipped at zero (`min(shape(x)[0], 0)`; with a static batch, a value
derived from the input data) in the packed layout, or the cache flag (0 while
decoding) in the cached layout. Adding it to the words costs one `ADD` per
kernel and makes every op downstream a runtime op, while the words stay
constants in the file.

The indices are stored in TFLite's own kernel layout
(`lc_keras.packing.tflite_layout`), then transposed to the Keras layout in
the TensorFlow graph; the converter cancels that transpose against its own,
so no runtime `TRANSPOSE` remains.

After conversion the file itself is checked
(`lc_keras.tflite_file.verify_export`: every op a builtin, every compressed
kernel present as its exact packed int32 words, no float copy of a kernel)
and only then written, atomically (`lc_keras.files`), with a checksum: a
metadata entry `lc_keras_checksums` holds the CRC32 of the whole file and of
each kernel's packed words and codebook, which `inspect_tflite`,
`expand_tflite` and `load_interpreter` verify before reading anything else,
naming the kernel whose bytes changed.
"""

import contextlib
import dataclasses
import math
import os
import re
import warnings

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lc_keras import files
from lc_keras import native
from lc_keras import rewrites
from lc_keras import spec as spec_lib
from lc_keras.packing import plan_kernel
from lc_keras.quantized import QuantizedKernel
from lc_keras.tflite_file import RUNTIME_ZERO_NAME
from lc_keras.tflite_file import add_checksums
from lc_keras.tflite_file import verify_export

LAYOUTS = ("packed", "cached", "native")


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """What `export_tflite` wrote.

    Attributes:
        path: The `.tflite` file.
        layout: `"packed"`, `"cached"` or `"native"`.
        size_bytes: File size.
        kernels: One `lc_keras.packing.ExportedKernel` per compressed
            kernel, in state order.

    Example:

    >>> TFLiteExport("m.tflite", "packed", 1000, ()).index_bytes
    0
    """

    path: str
    layout: str
    size_bytes: int
    kernels: tuple

    @property
    def index_bytes(self):
        """Total bytes of packed indices."""
        return sum(k.index_bytes for k in self.kernels)

    @property
    def codebook_bytes(self):
        """Total bytes of codebooks, shared codebooks counted once."""
        return sum({k.group: k.codebook_bytes for k in self.kernels}.values())


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


def _check_state(variables, state):
    if not isinstance(state, dict) or not state:
        raise ValueError(
            "export_tflite needs the compression state of at least one "
            "kernel, but the model has none: it never ran a C step. Run "
            "`model.direct_compression()` or `fit` with a `MuSchedule` "
            f"first. Received: state={state!r}")
    if not isinstance(variables, dict):
        raise TypeError(
            "export_tflite expects `variables` as a dict {kernel path: "
            f"keras.Variable}}. Received: {type(variables).__name__}")
    missing = [key for key in state if key not in variables]
    if missing:
        raise ValueError(
            f"export_tflite has no variable for the compressed kernels "
            f"{missing}. Received variables for: {sorted(variables)}")
    unquantized = [key for key in variables if key not in state]
    if unquantized:
        raise ValueError(
            f"export_tflite has no compression state (codebook and indices) "
            f"for the kernels {unquantized}: run a C step first.")


def _plan(keras_model, variables, state):
    """`(plan, variable)` of every kernel, checked against the model."""
    _check_state(variables, state)
    model_variables = {id(v) for v in keras_model.variables}
    kernels = []
    for key, q in state.items():
        if not isinstance(q, QuantizedKernel):
            raise TypeError(
                f"export_tflite expects QuantizedKernel values in the state. "
                f"Received for '{key}': {type(q).__name__}")
        variable = variables[key]
        where = f"kernel '{key}' of layer '{q.layer_name}'"
        if id(variable) not in model_variables:
            raise ValueError(
                f"The variable of {where} ({variable.path}) is not a "
                "variable of the exported model.")
        if tuple(variable.shape) != q.shape:
            raise ValueError(
                f"The indices of {where} have shape {q.shape} but the "
                f"variable has shape {tuple(variable.shape)}.")
        kernels.append((plan_kernel(key, q), variable))
    return kernels


# ---------------------------------------------------------------------------
# Graph
# ---------------------------------------------------------------------------


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", text).strip("/") or "kernel"


def _codebook(plan, codebooks):
    if plan.codebook_key not in codebooks:
        codebooks[plan.codebook_key] = tf.constant(
            plan.q.codebook.reshape(-1), tf.float32,
            name=f"lc/{_safe_name(plan.q.group)}/codebook")
    return codebooks[plan.codebook_key]


def _words_name(plan):
    return f"lc/{_safe_name(plan.key)}/packed_indices"


def _first(flat, count, shape):
    """The first `count` entries of `flat`, reshaped."""
    if flat.shape[0] != count:
        flat = flat[:count]
    return tf.reshape(flat, shape)


def _decode_by_bytes(plan, zero, codebooks):
    """b in {1, 2, 4, 8}: BITCAST the words to bytes, then GATHER rows of a
    256-entry table (one row per byte value: its 8/b indices or values)."""
    bits, k = plan.bits, plan.q.k
    per_byte = 8 // bits
    words = tf.constant(plan.words, tf.int32, name=_words_name(plan))
    # Little-endian bytes of the bit stream (TFLite targets are LE).
    data = tf.cast(tf.bitcast(words + zero, tf.uint8), tf.int32)  # [W, 4]
    codebook = _codebook(plan, codebooks)
    count = plan.q.size
    if bits == 8:  # one index per byte (padding bytes are index 0)
        if plan.offsets is None:
            return _first(tf.reshape(tf.gather(codebook, data), [-1]), count,
                          plan.tflite_shape)
        indices = _first(tf.reshape(data, [-1]), count, plan.tflite_shape)
        return tf.gather(codebook, indices + tf.constant(plan.offsets))
    # Shared by all kernels: [256, 8/b], the indices packed in each byte.
    if ("fields", bits) not in codebooks:
        if "bytes" not in codebooks:
            codebooks["bytes"] = tf.reshape(tf.range(zero, 256 + zero),
                                            [-1, 1])
        codebooks[("fields", bits)] = tf.math.floormod(
            tf.bitwise.right_shift(
                codebooks["bytes"],
                tf.constant(np.arange(per_byte, dtype=np.int32) * bits)),
            1 << bits)
    fields = codebooks[("fields", bits)]
    if plan.offsets is None:
        # Per codebook: [256, 8/b] values. Byte values that never occur can
        # hold indices >= k: clip them.
        key = ("table", plan.codebook_key, bits)
        if key not in codebooks:
            codebooks[key] = tf.gather(
                codebook, fields if k == 1 << bits else tf.minimum(
                    fields, k - 1))
        return _first(tf.reshape(tf.gather(codebooks[key], data), [-1]),
                      count, plan.tflite_shape)
    indices = _first(tf.reshape(tf.gather(fields, data), [-1]), count,
                     plan.tflite_shape)
    return tf.gather(codebook, indices + tf.constant(plan.offsets))


def _decode_by_shifts(plan, zero, codebooks):
    """Any b: RIGHT_SHIFT + FLOOR_MOD on the words, then GATHER."""
    bits, count = plan.bits, plan.q.size
    n_words = int(plan.words.size)
    if 32 % bits == 0:
        per_word = 32 // bits
        # Stored as [words, 1] so that no folded reshape renames it.
        words = tf.constant(plan.words.reshape(-1, 1), tf.int32,
                            name=_words_name(plan))
        shifts = tf.constant(np.arange(per_word, dtype=np.int32) * bits) + zero
        fields = tf.bitwise.right_shift(words, shifts)
        flat = tf.reshape(tf.math.floormod(fields, 1 << bits), [-1])
    else:
        words = tf.constant(plan.words, tf.int32, name=_words_name(plan))
        # Indices straddle words: a block of n words holds m indices.
        g = math.gcd(bits, 32)
        per_block, words_per_block = 32 // g, bits // g
        blocks = -(-count // per_block)
        start = np.arange(per_block, dtype=np.int64) * bits
        word_of = (start // 32).astype(np.int32)
        shift = (start % 32).astype(np.int32)
        low_bits = np.minimum(bits, 32 - shift)
        high_bits = bits - low_bits
        # A runtime range: a folded one would store `blocks` int32s.
        base = tf.reshape(
            tf.range(zero, blocks + zero) * words_per_block, [-1, 1])
        low_at = tf.minimum(base + word_of, n_words - 1)
        high_at = tf.minimum(low_at + 1, n_words - 1)
        low = tf.math.floormod(
            tf.bitwise.right_shift(tf.gather(words, low_at), shift),
            (1 << low_bits).astype(np.int32))
        high = tf.math.floormod(tf.gather(words, high_at),
                                (1 << high_bits).astype(np.int32))
        flat = tf.reshape(low + high * (1 << low_bits).astype(np.int32),
                          [-1])
    indices = _first(flat, count, plan.tflite_shape)
    if plan.offsets is not None:
        indices = indices + tf.constant(plan.offsets)
    return tf.gather(_codebook(plan, codebooks), indices)


def _decode_kernel(plan, zero, codebooks):
    """TF ops: packed int32 words -> float kernel in TFLite layout.

    `zero` is a runtime int32 scalar equal to 0; it keeps the converter from
    folding the decoding into a float constant. `codebooks` caches tensors
    shared between kernels (codebooks, byte tables) within one trace.
    """
    if plan.bits in (1, 2, 4, 8):
        return _decode_by_bytes(plan, zero, codebooks)
    return _decode_by_shifts(plan, zero, codebooks)


def _to_keras_layout(plan, variable, value):
    if plan.perm != tuple(range(len(plan.perm))):
        value = tf.transpose(value, np.argsort(plan.perm).tolist())
    if plan.one_d:
        value = tf.reshape(value, plan.q.shape)
    dtype = tf.as_dtype(variable.dtype)
    return value if dtype == tf.float32 else tf.cast(value, dtype)


def _runtime_zero(flat_inputs):
    """An int32 scalar 0 that the converter cannot fold.

    Named `RUNTIME_ZERO_NAME`, so that `lc_keras.expand_tflite` can tell it
    from data (it is 0 whatever the input).
    """
    x = flat_inputs[0]
    if x.shape.rank and x.shape[0] is None:
        return tf.minimum(tf.shape(x)[0], 0, name=RUNTIME_ZERO_NAME)
    # Static batch: derive it from the data instead. (v == v) or (v != v) is
    # true for every value, NaN included.
    first = tf.reshape(x, [-1])[:1]
    always = tf.logical_or(tf.equal(first, first), tf.not_equal(first, first))
    return tf.reshape(1 - tf.cast(always, tf.int32), [],
                      name=RUNTIME_ZERO_NAME)


class _KernelCache(keras.layers.Layer):
    """Float caches of the decoded kernels (cached layout).

    Held as Keras weights on purpose: the TFLite converter gives them their
    static shape but stores no initial value for them (a `tf.Variable` would
    get its full zero value written into the file). The first invoke assigns
    every cache before anything reads it. `verify_export` checks that no float
    copy of a kernel ended up in the file.
    """

    def __init__(self, shapes, **kwargs):
        super().__init__(**kwargs)
        self.caches = [
            self.add_weight(shape=shape, initializer="zeros", trainable=False,
                            name=f"cache_{i}")
            for i, shape in enumerate(shapes)]


class _ExportModule(tf.Module):
    """Holds the state of the cached layout: a flag and the caches."""

    def __init__(self, plans, cached):
        super().__init__(name="lc_export")
        self.decoded = None
        self.kernel_cache = None
        if cached:
            # Initialised to 0 by the converter's CALL_ONCE initializer.
            self.decoded = tf.Variable(0, dtype=tf.int32, trainable=False,
                                       name="lc_decoded")
            self.kernel_cache = _KernelCache(
                [p.tflite_shape for p in plans], name="lc")


def _input_signature(keras_model, input_signature):
    if input_signature is not None:
        specs = tf.nest.flatten(input_signature)
        if not specs or not all(isinstance(s, tf.TensorSpec) for s in specs):
            raise TypeError(
                "export_tflite expects input_signature as a tf.TensorSpec or "
                "a list of them. Received: "
                f"input_signature={input_signature!r}")
        return input_signature
    candidates = [keras_model, getattr(keras_model, "net", None)]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            inputs = candidate.inputs
        except (AttributeError, ValueError):
            inputs = None
        if inputs:
            specs = []
            for i, t in enumerate(inputs):
                name = re.sub(r"[^A-Za-z0-9_]", "_",
                              getattr(t, "name", "") or f"input_{i}")
                specs.append(tf.TensorSpec(t.shape, tf.as_dtype(t.dtype),
                                           name=name))
            return specs[0] if len(specs) == 1 else specs
    config = None
    try:
        config = keras_model.get_build_config()
    except Exception:  # pylint: disable=broad-except
        config = None
    shape = (config or {}).get("input_shape")
    if shape is not None:
        def spec(s):
            return tf.TensorSpec(s, tf.float32)
        if isinstance(shape, (list, tuple)) and shape and all(
                isinstance(s, (list, tuple)) for s in shape):
            return [spec(s) for s in shape]
        if isinstance(shape, dict):
            return {k: spec(s) for k, s in shape.items()}
        return spec(shape)
    raise ValueError(
        f"Cannot infer the input signature of model '{keras_model.name}': it "
        "has no `inputs` and no build config. Pass "
        "`input_signature=tf.TensorSpec((None, ...), tf.float32)`.")


@contextlib.contextmanager
def _float32_compute(keras_model):
    """Traces mixed-precision layers in float32 (TFLite builtins are float32).

    Layers with a mixed policy (float32 variables, float16/bfloat16 compute)
    get the float32 policy while the export traces them, and their own back
    afterwards. The file then computes what the quantized net computes, in
    float32.
    """
    changed = []
    layers = [keras_model] + [
        layer for layer, _, _ in spec_lib.owned_layers(keras_model)]
    for layer in layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is None or policy.quantization_mode is not None:
            continue
        if policy.variable_dtype == "float32" and policy.compute_dtype in (
                "float16", "bfloat16"):
            changed.append((layer, policy))
            layer.dtype_policy = "float32"
    try:
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _folded_scales(kernels, folds):
    """Per plan: the folded normalisation scale in TFLite layout, or None."""
    scales = []
    for plan, variable in kernels:
        scale = folds.kernel_scale(variable) if folds is not None else None
        if scale is not None:
            unit = (1,) if plan.one_d else ()
            scale = np.transpose(scale.reshape(unit + scale.shape), plan.perm)
        scales.append(scale)
    return scales


def _trace(keras_model, kernels, signature, cached, folds=None,
           constants=None):
    plans = [plan for plan, _ in kernels]
    module = _ExportModule(plans, cached)
    compressed = {id(variable) for _, variable in kernels}
    # Values of variables other than their own: folded biases, and the
    # kernels the native layout stores as integers (traced as Δ(Θ)).
    values = dict(constants or {})
    values.update({id(v): value for v, value in (
        folds.bias_values() if folds is not None else [])})
    frozen = [(v, tf.constant(values[id(v)] if id(v) in values else
                              keras.ops.convert_to_numpy(v.value)))
              for v in keras_model.variables if id(v) not in compressed]
    scales = _folded_scales(kernels, folds)

    def decode(p, zero, codebooks, scale):
        value = _decode_kernel(p, zero, codebooks)
        # A folded normalisation: once, on the decoded weights.
        return value if scale is None else value * tf.constant(scale)

    def forward(*args):
        inputs = args[0] if len(args) == 1 else list(args)
        flat = tf.nest.flatten(inputs)
        codebooks = {}
        if not cached:
            zero = _runtime_zero(flat)
            decoded = [decode(p, zero, codebooks, s)
                       for p, s in zip(plans, scales)]
        else:
            flag = module.decoded.read_value()

            caches = module.kernel_cache.caches

            def decode_all():
                # `flag` is 0 here: it is the zero that blocks folding.
                assigns = [
                    cache.value.assign(decode(p, flag, codebooks, s))
                    for cache, p, s in zip(caches, plans, scales)]
                with tf.control_dependencies(assigns):
                    return tf.identity(module.decoded.assign(1))

            done = tf.cond(tf.equal(flag, 0), decode_all,
                           lambda: tf.identity(flag))
            with tf.control_dependencies([done]):
                decoded = [tf.convert_to_tensor(cache.value)
                           for cache in caches]
        mapping = list(frozen) + [
            (variable, _to_keras_layout(plan, variable, w))
            for (plan, variable), w in zip(kernels, decoded)]
        with keras.StatelessScope(state_mapping=mapping):
            return keras_model(inputs, training=False)

    specs = signature if isinstance(signature, (list, tuple)) else [signature]
    function = tf.function(forward, input_signature=list(specs),
                           autograph=False)
    return module, function.get_concrete_function()


def _trace_folded(keras_model, kernels, signature, cached, constants=None):
    """Traces once, watching for normalisations to fold; again if any."""
    folds = rewrites.BatchNormFolds(keras_model, [v for _, v in kernels])
    with folds.discover():
        traced = _trace(keras_model, kernels, signature, cached,
                        constants=constants)
    if not folds.folds:
        return traced
    with folds.apply():
        return _trace(keras_model, kernels, signature, cached, folds,
                      constants)


def _trace_model(keras_model, kernels, signature, cached, explicit,
                 constants=None):
    """`_trace_folded` with recurrent layers unrolled (a dynamic batch), or,
    over sequences of unknown length, as loops (a static batch: 1 unless
    the caller's signature says otherwise)."""
    try:
        with rewrites.unrolled_rnns(keras_model):
            return _trace_folded(keras_model, kernels, signature, cached,
                                 constants)
    except ValueError as error:
        if not rewrites.is_unroll_error(error):
            raise
    if not explicit:
        signature = rewrites.with_batch(signature, 1)
        logging.warning(
            "Model '%s' has a recurrent layer over sequences of unknown "
            "length: its TFLite file takes batches of 1 (pass "
            "`input_signature` for another batch size).", keras_model.name)
    return _trace_folded(keras_model, kernels, signature, cached, constants)


def _convert(module, concrete):
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = True
    try:
        return bytes(converter.convert())
    except Exception as error:  # ConverterError is not public API.
        if "TensorListReserve" in str(error):
            shape = [1] + list(concrete.inputs[0].shape)[1:]
            raise RuntimeError(
                "TFLite conversion with builtin ops only failed: a recurrent "
                "layer over sequences of unknown length runs as a loop, "
                "which needs a static batch size. Pass one, e.g. "
                f"`input_signature=[tf.TensorSpec({tuple(shape)})]`. "
                f"Converter error: {error}") from error
        raise RuntimeError(
            "TFLite conversion with builtin ops only failed. The model uses "
            f"an op that has no TFLite builtin: {error}") from error


def _convert_native(keras_model, kernels, signature, explicit):
    """The native layout: `(data, packed kernels, integer kernels)`.

    Kernels on an integer grid are traced as float constants Δ(Θ) and
    rewritten as LiteRT integer tensors (`lc_keras.native`); the others,
    and any the converter did not keep as a filter of an op with integer
    weights, are packed (with a warning naming them).
    """
    integers = {}
    for plan, variable in kernels:
        found = native.integer_kernel(plan.key, plan.q)
        if found is not None:
            integers[plan.key] = found
    while True:  # ends: `integers` shrinks every round that misses one
        packed = [(p, v) for p, v in kernels if p.key not in integers]
        constants = {id(v): integers[p.key].q.values() for p, v in kernels
                     if p.key in integers}
        with _float32_compute(keras_model):
            module, concrete = _trace_model(
                keras_model, packed, signature, cached=False,
                explicit=explicit, constants=constants)
        data, stored, missing = native.store_integers(
            _convert(module, concrete), list(integers.values()))
        if not missing:
            break
        for key in missing:
            del integers[key]
    left = [p.key for p, _ in kernels if p.key not in integers]
    if left:
        warnings.warn(
            "export_tflite(layout='native') stores these kernels packed, "
            "as their codebooks are not an integer grid with a scale (or "
            "their op takes no integer weights): " + ", ".join(left),
            stacklevel=3)
    return data, packed, tuple(stored)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(
            f"export_tflite supports layout in {LAYOUTS}. Received: "
            f"layout={layout!r}")


def _check_path(path):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"export_tflite expects a file path. Received: path={path!r}"
        ) from None
    if not str(path).endswith(".tflite"):
        raise ValueError(
            "export_tflite writes a `.tflite` file; the path must end in "
            f"'.tflite'. Received: path={path!r}")
    try:
        files.check_writable(path, "export_tflite")
    except OSError as error:
        raise ValueError(f"{error} Received: path={path!r}") from None
    return path


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


def export_quantized(keras_model, variables, state, path, *, layout="packed",
                     input_signature=None):
    """Exports a Keras model with quantized kernels to a small `.tflite`.

    The model runs as `keras_model(x, training=False)` with each kernel in
    `variables` replaced by its decoded `state` (codebook[indices]); every
    other variable is frozen at its current value.

    Args:
        keras_model: A built `keras.Model`.
        variables: `{key: keras.Variable}`, the compressed kernels of the
            model.
        state: `{key: QuantizedKernel}` with the same keys.
        path: Output path, ending in `.tflite`.
        layout: `"packed"` (decode every invoke), `"cached"` (decode on
            the first invoke into float resource variables) or `"native"`
            (kernels on an integer grid as LiteRT INT2/INT4/INT8 weights,
            the others packed; see `lc_keras.native`).
        input_signature: A `tf.TensorSpec` (or a list, one per input). By
            default taken from `keras_model.inputs`, else from its build
            config (float32).

    Returns:
        A `TFLiteExport` describing the file.

    Raises:
        ValueError: for a bad path, layout or state, or if the converted file
            does not store a kernel as packed int32 words.
        RuntimeError: if conversion with builtin ops fails.

    Example:

    >>> import keras, numpy as np, os, tempfile
    >>> from lc_keras.quantized import QuantizedKernel
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> kernel = net.layers[0].kernel
    >>> q = QuantizedKernel(
    ...     name="k", layer_name="dense", attribute="kernel",
    ...     kind="BinaryQuantization",
    ...     codebook=np.array([-1.0, 1.0], np.float32),
    ...     indices=np.random.randint(0, 2, (8, 4)), layer_type="Dense")
    >>> out = os.path.join(tempfile.mkdtemp(), "net.tflite")
    >>> info = export_quantized(net, {"k": kernel}, {"k": q}, out)
    >>> info.kernels[0].words, info.index_bytes
    (1, 4)
    """
    _check_layout(layout)
    path = _check_path(path)
    data, plans, integers = _file_bytes(keras_model, variables, state,
                                        layout, input_signature)
    files.atomic_write_bytes(path, data)
    exported = {p.key: p.exported() for p in plans}
    exported.update({k.key: k.exported() for k in integers})
    result = TFLiteExport(path=path, layout=layout, size_bytes=len(data),
                          kernels=tuple(exported[key] for key in state
                                        if key in exported))
    logging.info(
        "Wrote %s (%d bytes, layout=%s): %d kernels (%d as LiteRT integers), "
        "%d bytes of indices, %d bytes of codebooks.", path, len(data),
        layout, len(result.kernels), len(integers), result.index_bytes,
        result.codebook_bytes)
    return result


def _file_bytes(keras_model, variables, state, layout, input_signature):
    """`(bytes of the file, plans)`: traced, converted, verified and
    checksummed; what `export_quantized` writes."""
    _check_layout(layout)
    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            "export_tflite expects a keras.Model. Received: "
            f"{type(keras_model).__name__}")
    if not keras_model.built and not keras_model.variables:
        raise ValueError(
            f"Model '{keras_model.name}' is not built; build it (or call it "
            "on a batch) before exporting.")
    kernels = _plan(keras_model, variables, state)
    for plan, variable in kernels:
        if variable.dtype != "float32":
            raise ValueError(
                "export_tflite writes float32 models (TFLite's builtin ops "
                "compute in float32); mixed-precision policies are fine, but "
                f"layer '{plan.q.layer_name}' has a {variable.dtype} "
                f"kernel. Received: kernel '{plan.key}' of dtype "
                f"{variable.dtype}. Build the model with float32 or a "
                "mixed policy.")
    signature = _input_signature(keras_model, input_signature)
    explicit = input_signature is not None
    if layout == "native":
        data, kernels, integers = _convert_native(keras_model, kernels,
                                                  signature, explicit)
    else:
        with _float32_compute(keras_model):
            module, concrete = _trace_model(
                keras_model, kernels, signature, cached=(layout == "cached"),
                explicit=explicit)
        data, integers = _convert(module, concrete), ()
    plans = [plan for plan, _ in kernels]
    verify_export(data, plans)
    data = add_checksums(data, plans)
    verify_export(data, plans)  # the repacked file too
    native.verify_integers(data, integers)
    return data, plans, integers


def _check_lcmodel(model):
    for method in ("compression_state", "compressed_variables"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                "export_tflite expects an LCModel (with compression_state() "
                "and compressed_variables()); use export_quantized for a "
                f"plain Keras model. Received: {type(model).__name__}")


def float_tflite_bytes(keras_model, input_signature=None):
    """A plain float32 TFLite conversion of a Keras model's current weights.

    The baseline every size and latency of this package is measured
    against: the weights are frozen into constants (the converter then
    folds normalisations into the kernels, as for any float model).

    Args:
        keras_model: A built `keras.Model`.
        input_signature: Optional `tf.TensorSpec` (or list); default: the
            model's inputs with a dynamic batch.

    Returns:
        The `.tflite` bytes.

    Example:

    >>> import keras
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> float_tflite_bytes(net)[4:8]
    b'TFL3'
    """
    frozen = [(v, tf.constant(keras.ops.convert_to_numpy(v.value)))
              for v in keras_model.variables]
    if input_signature is None:
        input_signature = [tf.TensorSpec(t.shape, t.dtype)
                           for t in keras_model.inputs]
    elif isinstance(input_signature, tf.TensorSpec):
        input_signature = [input_signature]

    @tf.function(input_signature=list(input_signature), autograph=False)
    def forward(*args):
        inputs = args[0] if len(args) == 1 else list(args)
        with keras.StatelessScope(state_mapping=frozen):
            return keras_model(inputs, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [forward.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def tflite_bytes(model, *, layout="packed", input_signature=None):
    """The bytes `export_tflite` would write, without writing them.

    Args:
        model: An `LCModel` that ran at least one C step.
        layout: `"packed"`, `"cached"` or `"native"` (see `export_tflite`).
        input_signature: Optional `tf.TensorSpec` (or list).

    Returns:
        The bytes of the `.tflite` file: the same, byte for byte, as the
        file `export_tflite(model, path, layout=layout)` writes.

    Raises:
        ValueError: unknown layout or no C step yet.

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> tflite_bytes(model)[4:8]
    b'TFL3'
    """
    _check_lcmodel(model)
    data, _, _ = _file_bytes(
        model, model.compressed_variables(), model.compression_state(),
        layout, input_signature)
    return data


def export_tflite(model, path, *, layout="packed", input_signature=None):
    """Exports a trained `LCModel` to a `.tflite` file of packed indices.

    Each compressed kernel is stored as its codebook indices, `ceil(log2 K)`
    bits each, packed into int32 words, plus its float32 codebook (per
    layer, shared or per channel), and decoded in the graph with builtin ops
    only. The file is checked after conversion and written atomically.

    Args:
        model: An `LCModel` that ran at least one C step (also after loading
            it from a `.keras` file).
        path: Output path, ending in `.tflite`.
        layout: `"packed"` decodes the kernels on every invoke; `"cached"`
            decodes them on the first invoke into float resource variables
            and reuses them (faster; a slightly larger file; the float
            kernels stay in memory); `"native"` stores every kernel whose
            codebook is an integer grid with a scale (`UniformQuantization`,
            binary, ternary, scaled binary/ternary, any affine codebook) as
            LiteRT's INT2/INT4/INT8 weights with per-channel scales, which
            the stock interpreter runs as stored with its fast
            dynamic-range kernels (activations quantized to int8 at run
            time); other kernels are packed, with a warning.
        input_signature: Optional `tf.TensorSpec` (or list) for models whose
            inputs cannot be inferred.

    Returns:
        A `TFLiteExport` (path, size, per-kernel storage).

    Raises:
        ValueError: path not ending in `.tflite`, unknown layout, no C step
            yet, or a kernel not stored as packed words.

    Example:

    >>> import keras, numpy as np, os, tempfile, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> out = os.path.join(tempfile.mkdtemp(), "net.tflite")
    >>> info = export_tflite(model, out)
    >>> info.kernels[0].bits, info.kernels[0].words
    (1, 1)
    """
    _check_layout(layout)
    _check_path(path)
    _check_lcmodel(model)
    return export_quantized(
        model, model.compressed_variables(), model.compression_state(), path,
        layout=layout, input_signature=input_signature)
