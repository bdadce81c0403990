"""Shows where the bytes of a `.tflite` file went.

Prints the ops (per subgraph, with counts), every tensor that stores data in
the file (name, type, shape, bytes), every packed kernel found (weights,
packed int32 words, stored bits per weight, codebook entries) and totals.

Usage:

    python tools/inspect_tflite.py model.tflite
    python tools/inspect_tflite.py model.tflite --all_tensors --top=20
"""

import collections
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lc_keras.tflite_file import inspect_tflite  # noqa: E402

_ALL_TENSORS = flags.DEFINE_bool(
    "all_tensors", False, "List every tensor, not only those with data.")
_TOP = flags.DEFINE_integer(
    "top", 0, "List only the N largest tensors with data (0: all).")


def _shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def report(path, all_tensors=False, top=0):
    """The inspection report of one `.tflite` file, as text.

    Args:
        path: Path of the `.tflite` file.
        all_tensors: List every tensor, also those without data.
        top: List only the `top` largest tensors with data (0: all).

    Returns:
        The report (a string).

    Example:

    >>> print(report("lenet300.tflite"))  # doctest: +SKIP
    """
    summary = inspect_tflite(path)
    lines = [f"File: {path}", f"Size: {summary.size_bytes:,} bytes", ""]

    by_subgraph = collections.defaultdict(list)
    for subgraph, name in summary.ops:
        by_subgraph[subgraph].append(name)
    lines.append("Ops (execution order, per subgraph):")
    for subgraph in sorted(by_subgraph):
        names = by_subgraph[subgraph]
        counts = collections.Counter(names)
        lines.append(f"  subgraph {subgraph}: {len(names)} ops: "
                     + ", ".join(f"{n} x{c}" for n, c in sorted(
                         counts.items())))
        lines.append("    " + " > ".join(names))
    custom = summary.custom_ops
    lines.append(f"  non-builtin ops: {custom if custom else 'none'}")
    lines.append("")

    tensors = [t for t in summary.tensors if all_tensors or t.constant]
    tensors.sort(key=lambda t: -t.data_bytes)
    if top:
        tensors = tensors[:top]
    lines.append(f"Tensors{'' if all_tensors else ' with data'} "
                 f"({len(tensors)}, largest first):")
    lines.append(f"  {'sg':>2} {'idx':>4} {'type':<8} {'shape':<18} "
                 f"{'bytes':>10}  name")
    for t in tensors:
        lines.append(f"  {t.subgraph:>2} {t.index:>4} {t.dtype:<8} "
                     f"{_shape(t.shape):<18} {t.data_bytes:>10,}  {t.name}")
    lines.append("")

    packed = summary.packed_kernels
    lines.append(f"Packed kernels ({len(packed)}):")
    lines.append(f"  {'weights':>9} {'words':>8} {'index B':>9} "
                 f"{'bits/w':>7} {'codebook':>8}  name")
    for k in packed:
        lines.append(f"  {k.weights:>9,} {k.words:>8,} {k.index_bytes:>9,} "
                     f"{k.bits_per_weight:>7.3f} {k.codebook_entries:>8}  "
                     f"{k.name}")
    lines.append("")

    by_type = collections.Counter()
    for t in summary.tensors:
        by_type[t.dtype] += t.data_bytes
    weights = sum(k.weights for k in packed)
    index_bytes = sum(k.index_bytes for k in packed)
    lines.append("Totals:")
    lines.append(f"  file                 {summary.size_bytes:>12,} B")
    for dtype, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
        if n:
            lines.append(f"  {dtype + ' data':<20} {n:>12,} B")
    lines.append(f"  packed indices       {index_bytes:>12,} B for "
                 f"{weights:,} weights"
                 + (f" ({8 * index_bytes / weights:.3f} bits/weight)"
                    if weights else ""))
    other = summary.size_bytes - summary.constant_bytes
    lines.append(f"  graph and metadata   {other:>12,} B")
    if weights:
        lines.append(f"  whole file / weight  "
                     f"{8 * summary.size_bytes / weights:>12.3f} bits")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("Usage: inspect_tflite.py PATH.tflite [flags]")
    print(report(argv[1], all_tensors=_ALL_TENSORS.value, top=_TOP.value))


if __name__ == "__main__":
    app.run(main)
