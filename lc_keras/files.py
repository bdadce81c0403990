"""Atomic file writing: a file is either complete or not there at all.

Every file lc_keras or its tools write (TFLite exports, saved models, logs,
results, plots) goes through `atomic_path`: the content is written to a
temporary file in the same folder and renamed over the target only once it
is complete, so an interrupted or failed write leaves the previous file
intact and no half-written file behind.
"""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to `path` on success.

    The temporary file lives in the target's folder (so the final
    `os.replace` is an atomic rename on POSIX and Windows) and keeps the
    target's extension (so writers that check suffixes, like
    `keras.Model.save`, accept it). On any exception it is removed and the
    previous `path`, if any, is left untouched.

    Args:
        path: The file to write.

    Yields:
        The temporary path to write to.

    Raises:
        FileNotFoundError: if the target's folder does not exist.
        PermissionError: if the folder is not writable.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> open(target).read()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Cannot write {path!r}: folder {folder!r} does not exist.")
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}",
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically.

    Args:
        path: The file to write.
        data: The bytes.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "b.bin")
    >>> atomic_write_bytes(target, b"abc")
    >>> open(target, "rb").read()
    b'abc'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text):
    """Writes `text` (str, UTF-8) to `path` atomically.

    Args:
        path: The file to write.
        text: The text.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "t.md")
    >>> atomic_write_text(target, "# hi")
    >>> open(target).read()
    '# hi'
    """
    atomic_write_bytes(path, text.encode("utf-8"))
