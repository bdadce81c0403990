import os

import pytest

from lc_keras import files


def test_write_then_replace(tmp_path):
    target = os.path.join(tmp_path, "a.txt")
    files.atomic_write_text(target, "one")
    files.atomic_write_text(target, "two")
    assert open(target).read() == "two"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failure_midway_keeps_the_previous_file(tmp_path):
    target = os.path.join(tmp_path, "model.tflite")
    files.atomic_write_bytes(target, b"previous")
    with pytest.raises(RuntimeError, match="disk full"):
        with files.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half-writ")
            raise RuntimeError("disk full")
    assert open(target, "rb").read() == b"previous"
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_failure_without_a_previous_file_leaves_nothing(tmp_path):
    target = os.path.join(tmp_path, "new.keras")
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(target) as tmp:
            assert tmp.endswith(".keras")
            open(tmp, "wb").write(b"x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        files.atomic_write_text(os.path.join(tmp_path, "no", "x.md"), "x")


def test_target_inside_a_file_is_an_error(tmp_path):
    blocker = os.path.join(tmp_path, "file")
    files.atomic_write_text(blocker, "x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        files.atomic_write_text(os.path.join(blocker, "x.md"), "y")
    assert open(blocker).read() == "x"
