"""Atomic file writing: a file is either complete or not there at all.

Every file lc_keras or its tools write (TFLite exports, saved models, logs,
results, plots) goes through `atomic_path`: the content is written to a
temporary file in the same folder and renamed over the target only once it
is complete, so an interrupted or failed write leaves the previous file
intact and no half-written file behind. Files get the mode `open()` would
give them (the umask's, or the mode of the file they replace), and
`check_writable` checks an output path before a long run.
"""

import contextlib
import os
import stat
import tempfile
import threading
import zipfile

_UMASK_LOCK = threading.Lock()


def _umask():
    """The process's umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(path):
    """Mode of a new file at `path`: the existing file's, else the umask's."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def check_writable(path, owner="lc_keras"):
    """Checks that a file can be written at `path`, before any long work.

    The checks are those a later `atomic_path(path)` needs: the folder
    exists and is a folder, `path` itself is not a folder, and a file can be
    created in the folder (tried for real, with a temporary file that is
    removed at once, so that it also holds for root and for read-only
    mounts).

    Args:
        path: The file to be written.
        owner: Who asks (named in the error messages), e.g. `"--out"`.

    Returns:
        `path`, as a string.

    Raises:
        FileNotFoundError: if the folder of `path` does not exist.
        NotADirectoryError: if a component of the folder is a regular file.
        IsADirectoryError: if `path` is a folder.
        PermissionError: if no file can be created in the folder.

    Example:

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_writable(os.path.join(folder, "out.keras")) == os.path.join(
    ...     folder, "out.keras")
    True
    >>> check_writable(os.path.join(folder, "no", "out.keras"))
    Traceback (most recent call last):
    ...
    FileNotFoundError: lc_keras cannot write '...out.keras': its folder '...no' does not exist.
    """
    path = _check_target(path, owner)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lc_keras_check.", dir=folder)
    except OSError as error:
        raise PermissionError(
            f"{owner} cannot write {path!r}: no file can be created in "
            f"{folder!r} ({error.strerror or error}).") from None
    os.close(fd)
    os.remove(tmp)
    return path


def _check_target(path, owner):
    """The folder and file checks of `check_writable`, without the trial."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        blocker = folder
        while blocker and not os.path.exists(blocker):
            parent = os.path.dirname(blocker)
            if parent == blocker:
                break
            blocker = parent
        if os.path.exists(blocker) and not os.path.isdir(blocker):
            raise NotADirectoryError(
                f"{owner} cannot write {path!r}: {blocker!r} is a file, not "
                "a folder.")
        raise FileNotFoundError(
            f"{owner} cannot write {path!r}: its folder {folder!r} does not "
            "exist.")
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{owner} cannot write {path!r}: it is a folder, not a file.")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to `path` on success.

    The temporary file lives in the target's folder (so the final
    `os.replace` is an atomic rename on POSIX and Windows) and keeps the
    target's extension (so writers that check suffixes, like
    `keras.Model.save`, accept it). The file gets the mode of the file it
    replaces, or for a new file the mode the umask gives (0644 under the
    usual umask 022), as `open()` would. On any exception, KeyboardInterrupt
    included, it is removed and the previous `path`, if any, is left
    untouched. (A process killed outright, e.g. by SIGKILL, can leave the
    temporary `.<name>.*.tmp<ext>` file; the target is intact.)

    Args:
        path: The file to write.

    Yields:
        The temporary path to write to.

    Raises:
        FileNotFoundError: if the target's folder does not exist.
        NotADirectoryError: if a component of the folder is a regular file.
        IsADirectoryError: if `path` is a folder.
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
    path = _check_target(path, "lc_keras")
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    mode = _mode_for(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}",
                                   dir=folder)
    except OSError as error:
        raise PermissionError(
            f"lc_keras cannot write {path!r}: no file can be created in "
            f"{folder!r} ({error.strerror or error}).") from None
    try:
        os.close(fd)
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
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


def check_keras_file(path):
    """Checks that a `.keras` file is a complete archive, before Keras reads it.

    Keras reports a truncated `.keras` file as "File not found" (it looks
    for a legacy SavedModel folder once the zip cannot be read); this names
    the file and what is wrong with it instead. Every member's CRC is
    checked.

    Args:
        path: The `.keras` file.

    Returns:
        `path`, as a string.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if it is truncated or corrupt.

    Example:

    >>> import os, tempfile
    >>> bad = os.path.join(tempfile.mkdtemp(), "cut.keras")
    >>> atomic_write_bytes(bad, b"PK\\x03\\x04 cut")
    >>> check_keras_file(bad)
    Traceback (most recent call last):
    ...
    ValueError: The file '...cut.keras' is truncated or corrupt: not a complete .keras (zip) archive (File is not a zip file). Save the model again.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .keras file: {path!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise ValueError(
            f"The file {path!r} is truncated or corrupt: not a complete "
            f".keras (zip) archive ({error}). Save the model again."
        ) from None
    if broken is not None:
        raise ValueError(
            f"The file {path!r} is truncated or corrupt: its member "
            f"{broken!r} fails its CRC check. Save the model again.")
    return path
