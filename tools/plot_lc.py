r"""Pictures of an LC run: codebooks, weight histograms, error vs ρ.

    python tools/plot_lc.py --history run.json --out_dir plots
    python tools/plot_lc.py --model lc.keras --layer dense_1 --out_dir plots
    python tools/plot_lc.py --results results.csv --out_dir plots

Writes PNG files into `--out_dir`:

* `--history` (a JSON or CSV of the epoch logs: what `python -m lc_keras
  compress --history` writes, or a `keras.callbacks.CSVLogger` file):
  `codebooks.png`, the entries of each layer's codebook against the LC step
  (the paper's signature figure), and `distortion.png`, ‖w − Δ(Θ)‖² of each
  kernel and μ against the LC step.
* `--model` (an `LCModel` saved as `.keras`, e.g. by `compress --save_lc`):
  `weights_<kernel>.png` for each kernel named by `--layer` (default: all),
  the histogram of its continuous weights w with its codebook entries as
  vertical lines.
* `--results` (see `read_results` for the format): `error_vs_rho.png`, test
  error against the compression ratio ρ, one line per method.

Needs matplotlib: `pip install 'lc_keras[plot]'`.
"""

import csv
import json
import math
import os
import re
import stat
import sys
import tempfile

from absl import app
from absl import flags

import numpy as np

MISSING_MATPLOTLIB = (
    "tools/plot_lc.py needs matplotlib, which is not installed. Install it "
    "with `pip install 'lc_keras[plot]'` (or `pip install matplotlib`).")


def figure(**kwargs):
    """A new matplotlib `Figure` (no pyplot, no display needed).

    Args:
        **kwargs: Passed to `matplotlib.figure.Figure` (e.g. `figsize`).

    Returns:
        The `Figure`.

    Raises:
        ImportError: with install instructions, if matplotlib is missing.

    Example:

    >>> fig = figure(figsize=(2, 2))
    >>> type(fig).__name__
    'Figure'
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(MISSING_MATPLOTLIB) from error
    return Figure(**kwargs)


# ---------------------------------------------------------------------------
# Reading logs
# ---------------------------------------------------------------------------


def _number(text):
    if isinstance(text, (int, float)):
        return float(text)
    text = str(text).strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_history(path):
    """Reads the epoch logs of a run as `{key: [value per epoch]}`.

    Accepts a JSON object of lists (`History.history`, optionally with an
    `"epoch"` list, or nested under a `"history"` key) or a CSV file with one
    row per epoch and a header (what `keras.callbacks.CSVLogger` writes).

    Args:
        path: The `.json` or `.csv` file.

    Returns:
        A dict of lists of floats, all of one length.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> _ = open(path, "w").write("epoch,lc_step,lc_mu\\n0,0,0.1\\n1,1,0.2\\n")
    >>> read_history(path)
    {'epoch': [0.0, 1.0], 'lc_step': [0.0, 1.0], 'lc_mu': [0.1, 0.2]}
    """
    if str(path).lower().endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and isinstance(data.get("history"), dict):
            data = {**({"epoch": data["epoch"]} if "epoch" in data else {}),
                    **data["history"]}
        if not isinstance(data, dict) or not all(
                isinstance(v, list) for v in data.values()):
            raise ValueError(
                f"{path} must hold a JSON object of lists (a Keras History: "
                "{metric: [value per epoch]}).")
        history = {k: [_number(v) for v in values]
                   for k, values in data.items()}
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"{path} has no rows (expected a CSV with a "
                             "header line and one row per epoch).")
        history = {k: [_number(r.get(k)) for r in rows] for k in rows[0]}
    lengths = {len(v) for v in history.values()}
    if len(lengths) > 1:
        raise ValueError(f"{path}: the metrics have different lengths "
                         f"{sorted(lengths)}.")
    return history


def _step_rows(history):
    """(x values, row indices): the last epoch of each LC step.

    x is the LC step (1-based: the codebook after the C step of that step).
    Without `lc_step`, every epoch is a row and x is the epoch (1-based).
    """
    n = len(next(iter(history.values()), []))
    steps = history.get("lc_step")
    if not steps:
        return np.arange(1, n + 1), list(range(n))
    last = {}
    for i, s in enumerate(steps):
        if not math.isnan(s):
            last[int(s)] = i
    order = sorted(last)
    return np.array([s + 1 for s in order]), [last[s] for s in order]


def codebook_series(history):
    """The codebook entries of each group, one row per LC step.

    Reads the `lc_codebook/<group>/<j>` columns that `MuSchedule` logs and
    keeps the last epoch of every LC step (the codebook after its C step).

    Args:
        history: A dict from `read_history`.

    Returns:
        `(steps, {group: array [len(steps), K]})`, steps 1-based.

    Example:

    >>> steps, books = codebook_series({
    ...     "lc_step": [0, 0, 1, 1],
    ...     "lc_codebook/d/kernel/0": [-1, -2, -3, -4],
    ...     "lc_codebook/d/kernel/1": [1, 2, 3, 4]})
    >>> steps.tolist(), books["d/kernel"].tolist()
    ([1, 2], [[-2.0, 2.0], [-4.0, 4.0]])
    """
    steps, rows = _step_rows(history)
    entries = {}
    for key in history:
        match = re.fullmatch(r"lc_codebook/(.+)/(\d+)", key)
        if match:
            entries.setdefault(match.group(1), {})[int(match.group(2))] = key
    books = {}
    for group, columns in entries.items():
        keys = [columns[j] for j in sorted(columns)]
        books[group] = np.array([[history[k][i] for k in keys] for i in rows],
                                dtype=float)
    return steps, books


_ALIASES = {"ρ": "rho", "rho": "rho", "compression_ratio": "rho",
            "test_error": "test_error", "test_err": "test_error",
            "error": "test_error", "method": "method", "net": "method",
            "name": "method", "label": "method"}


def _column(name):
    key = str(name).strip().lower().replace("ρ", "rho")
    key = re.sub(r"[^0-9a-z]+", "_", key).strip("_")
    return _ALIASES.get(key, key)


def _markdown_rows(text):
    lines = [l.strip() for l in text.splitlines() if l.strip().startswith("|")]
    cells = [[c.strip() for c in l.strip("|").split("|")] for l in lines]
    cells = [c for c in cells if not all(re.fullmatch(r":?-+:?", x) or not x
                                         for x in c)]
    if len(cells) < 2:
        return []
    header = cells[0]
    return [dict(zip(header, row)) for row in cells[1:]]


def read_results(path):
    """Reads a results file: one row per compressed (or reference) net.

    Format: a table with a header, as CSV (`.csv`), a markdown pipe table
    (`.md`; other lines are ignored) or JSON (`.json`: a list of objects,
    `{"results": [...]}`, or `{"rows": [...], "reference": {...}}`). Columns
    (case, spaces and `%` do not matter):

    * `method` (or `net`, `name`, `label`; else the first column if it is
      not a number): the label; points with the same label are joined by a
      line. `reference...` rows (or ρ ≤ 1) are drawn as a horizontal line.
    * `rho` (or `ρ`): the compression ratio.
    * `test_error` (or `test error %`): test error in percent.
    * optional `k` or `codebook`: written next to each point.

    `python -m lc_keras compress --results` appends to such a CSV,
    `tools/benchmark.py` writes the `.md` and `.json` forms, and the table
    that `examples/lenet300.py` prints reads too.

    Args:
        path: The results file.

    Returns:
        A list of dicts with `method` (str), `rho`, `test_error` (floats)
        and, where given, `note` (str, e.g. `"K=2"`); rows without both
        numbers are dropped.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.md")
    >>> _ = open(path, "w").write(
    ...     "| net | test error % | rho |\\n|---|---|---|\\n"
    ...     "| reference (float) | 10.75 | 1.0 |\\n| LC | 11.6 | 30.5 |\\n")
    >>> [(r["method"], r["rho"], r["test_error"]) for r in read_results(path)]
    [('reference (float)', 1.0, 10.75), ('LC', 30.5, 11.6)]
    """
    lower = str(path).lower()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if lower.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict):
            rows = list(data.get("results", data.get("rows", [])))
            reference = data.get("reference")
            if isinstance(reference, dict):
                rows.insert(0, {"method": "reference", "rho": 1.0,
                                **reference})
        else:
            rows = data
        if not isinstance(rows, list) or not all(
                isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: expected a list of objects, "
                             '{"results": [...]} or {"rows": [...]}.')
    elif lower.endswith(".md") or lower.endswith(".markdown"):
        rows = _markdown_rows(text)
    else:
        rows = list(csv.DictReader(text.splitlines()))
    results = []
    for raw in rows:
        raw = dict(raw)
        row = {_column(k): v for k, v in raw.items()}
        rho, error = _number(row.get("rho", "")), _number(
            row.get("test_error", ""))
        if math.isnan(rho) or math.isnan(error):
            continue
        method = row.get("method")
        if method is None and raw:
            first = next(iter(raw.values()))
            if math.isnan(_number(first)):
                method = first
        entry = {"method": str(method or "run").strip(), "rho": rho,
                 "test_error": error}
        k = str(row.get("k", "") or "").strip()
        codebook = str(row.get("codebook", "") or "").strip()
        if k:
            entry["note"] = f"K={k}"
        elif codebook and codebook != "float":
            entry["note"] = codebook
        results.append(entry)
    if not results:
        raise ValueError(
            f"{path} has no rows with both `rho` and `test_error` columns "
            "(see tools/plot_lc.py read_results for the format).")
    return results


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _save(fig, path):
    """Writes a figure as PNG atomically (complete file or none).

    The same temp-file-and-rename as `lc_keras.files.atomic_path`, without
    importing lc_keras (and TensorFlow) for the plots that do not need it.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".plot.", suffix=".tmp.png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, format="png")
        # The mode `open()` would give: the replaced file's, else the umask's.
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mask = os.umask(0o022)
            os.umask(mask)
            mode = 0o666 & ~mask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _grid(n):
    cols = min(n, 3)
    return -(-n // cols), cols


def plot_codebooks(history, path):
    """Draws each layer's codebook entries against the LC step.

    Args:
        history: A dict from `read_history` with `lc_codebook/...` columns.
        path: PNG file to write.

    Raises:
        ValueError: if the history has no codebook entries (codebooks larger
            than `MuSchedule(log_codebooks=...)` or per-channel are not
            logged).

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "codebooks.png")
    >>> plot_codebooks({"lc_step": [0, 1], "lc_codebook/d/kernel/0": [-1, -2],
    ...                 "lc_codebook/d/kernel/1": [1, 2]}, path)
    >>> os.path.getsize(path) > 0
    True
    """
    steps, books = codebook_series(history)
    if not books:
        raise ValueError(
            "The history has no `lc_codebook/<group>/<j>` entries: it was not "
            "logged by MuSchedule, or the codebooks are per-channel or larger "
            "than MuSchedule(log_codebooks=...).")
    rows, cols = _grid(len(books))
    fig = figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (group, values) in zip(axes, books.items()):
        for j in range(values.shape[1]):
            ax.plot(steps, values[:, j], marker="." if len(steps) < 50 else
                    None, linewidth=1.2)
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("LC step")
        ax.set_ylabel("codebook entries")
        ax.grid(alpha=0.3)
    for ax in axes[len(books):]:
        ax.set_visible(False)
    fig.suptitle("Codebooks along the LC iterations")
    _save(fig, path)


def plot_distortion(history, path):
    """Draws ‖w − Δ(Θ)‖² per kernel (log scale) and μ against the LC step.

    Args:
        history: A dict from `read_history` with `lc_distortion/...` columns.
        path: PNG file to write.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "distortion.png")
    >>> plot_distortion({"lc_step": [0, 1], "lc_mu": [0.1, 0.2],
    ...                  "lc_distortion/d/kernel": [1.0, 0.1]}, path)
    >>> os.path.getsize(path) > 0
    True
    """
    steps, rows = _step_rows(history)
    keys = [k for k in history if k.startswith("lc_distortion/")]
    if not keys:
        raise ValueError("The history has no `lc_distortion/<kernel>` "
                         "entries (were they logged by MuSchedule?).")
    fig = figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for key in keys:
        values = np.array([history[key][i] for i in rows])
        ax.plot(steps, np.maximum(values, 1e-30),
                label=key[len("lc_distortion/"):])
    ax.set_yscale("log")
    ax.set_xlabel("LC step")
    ax.set_ylabel("distortion ||w - Delta(Theta)||^2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if "lc_mu" in history:
        mu = ax.twinx()
        mu.plot(steps, [history["lc_mu"][i] for i in rows], "k--",
                linewidth=1, label="mu")
        mu.set_yscale("log")
        mu.set_ylabel("mu (dashed)")
    _save(fig, path)


def load_lc_model(path):
    """Loads an `LCModel` saved as `.keras` (continuous weights, codebooks).

    Args:
        path: The `.keras` file (`model.save(...)` of a trained `LCModel`,
            or `python -m lc_keras compress --save_lc`).

    Returns:
        The `LCModel`.

    Raises:
        ValueError: if the file holds a plain Keras model.

    Example:

    >>> model = load_lc_model("lc.keras")  # doctest: +SKIP
    """
    import lc_keras as lc

    model = lc.load_model(path, compile=False)
    if not isinstance(model, lc.LCModel):
        raise ValueError(
            f"{path} holds a {type(model).__name__}, not an LCModel: the "
            "weight histogram needs the continuous weights and codebooks. "
            "Save the LCModel itself (`model.save(...)`, or `compress "
            "--save_lc`), not `quantized_model()`.")
    return model


def kernel_names(model, layers=()):
    """The compressed kernels of `model` selected by layer names or paths.

    Args:
        model: An `LCModel` after a C step.
        layers: Layer names, kernel paths or glob patterns; empty: all.

    Returns:
        A list of kernel paths.

    Raises:
        ValueError: if a name matches no compressed kernel.

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((4,)),
    ...     keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")])
    >>> model = lc.LCModel(net)
    >>> _ = model.direct_compression()
    >>> kernel_names(model), kernel_names(model, ["b"])
    (['a/kernel', 'b/kernel'], ['b/kernel'])
    """
    import fnmatch

    state = model.compression_state()
    if not layers:
        return list(state)
    chosen = []
    for name in layers:
        found = [k for k, q in state.items()
                 if name in (k, q.layer_name) or fnmatch.fnmatchcase(k, name)
                 or fnmatch.fnmatchcase(q.layer_name, name)]
        if not found:
            raise ValueError(f"No compressed kernel matches {name!r}. "
                             f"Compressed kernels: {list(state)}")
        chosen += [k for k in found if k not in chosen]
    return chosen


def plot_weights(model, kernel, path, bins=100, max_lines=64):
    """Draws the histogram of a kernel's weights with its codebook entries.

    Args:
        model: An `LCModel` after a C step.
        kernel: Kernel path (`"dense_1/kernel"`) or its layer's name.
        path: PNG file to write.
        bins: Histogram bins.
        max_lines: Most codebook entries drawn (per-channel codebooks have
            many; the distinct values are thinned evenly).

    Example:

    >>> import keras, os, tempfile, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(3))
    >>> _ = model.direct_compression()
    >>> path = os.path.join(tempfile.mkdtemp(), "w.png")
    >>> plot_weights(model, "dense", path)
    >>> os.path.getsize(path) > 0
    True
    """
    (key,) = kernel_names(model, [kernel])[:1]
    q = model.compression_state()[key]
    w = np.asarray(model.compressed_variables()[key].numpy()).ravel()
    values = np.unique(q.codebook)
    if values.size > max_lines:
        values = values[np.linspace(0, values.size - 1, max_lines).astype(int)]
    fig = figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.hist(w, bins=bins, color="tab:blue", alpha=0.75, label="weights w")
    alpha = 0.9 if q.groups == 1 else 0.3
    for i, v in enumerate(values):
        ax.axvline(v, color="tab:red", linewidth=1.2, alpha=alpha,
                   label="codebook" if i == 0 else None)
    kind = q.kind + (f", {q.groups} per-channel rows" if q.groups > 1 else "")
    ax.set_title(f"{key}: {q.size} weights, K={q.k} ({kind})", fontsize=9)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_error_vs_rho(results, path):
    """Draws test error against ρ (log scale), one line per method.

    Args:
        results: Rows from `read_results`.
        path: PNG file to write.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "e.png")
    >>> plot_error_vs_rho([
    ...     {"method": "reference", "rho": 1.0, "test_error": 10.7},
    ...     {"method": "LC", "rho": 30.5, "test_error": 11.6, "note": "K=2"},
    ...     {"method": "LC", "rho": 15.6, "test_error": 11.3, "note": "K=4"}],
    ...     path)
    >>> os.path.getsize(path) > 0
    True
    """
    fig = figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    methods = {}
    for row in results:
        methods.setdefault(row["method"], []).append(row)
    for method, rows in methods.items():
        if method.lower().startswith("reference") or all(
                r["rho"] <= 1 for r in rows):
            for r in rows:
                ax.axhline(r["test_error"], color="gray", linestyle="--",
                           linewidth=1, label=method)
            continue
        rows = sorted(rows, key=lambda r: r["rho"])
        ax.plot([r["rho"] for r in rows], [r["test_error"] for r in rows],
                marker="o", label=method)
        for r in rows:
            if r.get("note"):
                ax.annotate(r["note"], (r["rho"], r["test_error"]),
                            textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio rho")
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_string("history", None, "Run logs: JSON History or CSV "
                        "(CSVLogger) with lc_codebook/lc_distortion columns.")
    flags.DEFINE_string("model", None, "LCModel saved as .keras, for the "
                        "weight histograms.")
    flags.DEFINE_list("layer", [], "Layers or kernels for the histograms "
                      "(default: all compressed kernels).")
    flags.DEFINE_string("results", None, "Results file (.csv, .md, .json) "
                        "with method, rho, test_error columns.")
    flags.DEFINE_string("out_dir", ".", "Folder for the PNG files.")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def make_plots(history=None, model=None, layers=(), results=None,
               out_dir="."):
    """Writes every plot that the given inputs allow.

    Args:
        history: Path of a run's logs (JSON or CSV), or None.
        model: Path of a saved `LCModel` (.keras), or None.
        layers: Kernels for the histograms (default: all).
        results: Path of a results file, or None.
        out_dir: Folder for the PNG files (created if needed).

    Returns:
        The list of PNG paths written.

    Example:

    >>> make_plots(history="run.json", out_dir="plots")  # doctest: +SKIP
    ['plots/codebooks.png', 'plots/distortion.png']
    """
    if not (history or model or results):
        raise ValueError("Nothing to plot: pass --history, --model or "
                         "--results.")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if history:
        logs = read_history(history)
        if any(k.startswith("lc_codebook/") for k in logs):
            written.append(os.path.join(out_dir, "codebooks.png"))
            plot_codebooks(logs, written[-1])
        if any(k.startswith("lc_distortion/") for k in logs):
            written.append(os.path.join(out_dir, "distortion.png"))
            plot_distortion(logs, written[-1])
        if not written:
            raise ValueError(f"{history} has no lc_codebook/ or "
                             "lc_distortion/ columns to plot.")
    if model:
        lc_model = load_lc_model(model)
        for key in kernel_names(lc_model, layers):
            written.append(os.path.join(out_dir, f"weights_{_safe(key)}.png"))
            plot_weights(lc_model, key, written[-1])
    if results:
        written.append(os.path.join(out_dir, "error_vs_rho.png"))
        plot_error_vs_rho(read_results(results), written[-1])
    return written


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        figure()
    except ImportError as error:
        sys.exit(str(error))
    try:
        paths = make_plots(FLAGS.history, FLAGS.model, FLAGS.layer,
                           FLAGS.results, FLAGS.out_dir)
    except (ValueError, OSError) as error:
        sys.exit(f"plot_lc: {error}")
    for path in paths:
        print(path)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
