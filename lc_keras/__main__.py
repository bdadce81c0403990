"""`python -m lc_keras compress ...`: see `lc_keras.cli`."""

from lc_keras.cli import run

if __name__ == "__main__":
    run()
