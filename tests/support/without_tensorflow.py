"""Runs the `lrnoise` command as if TensorFlow were not installed: `python without_tensorflow.py train ...`.

Used by the backend tests with KERAS_BACKEND=torch: the whole pipeline must work with no TensorFlow.
"""

import importlib.machinery
import sys

_find = importlib.machinery.PathFinder.find_spec.__func__


def _hide_tensorflow(cls, name, path=None, target=None):
    return None if name.split(".")[0] == "tensorflow" else _find(cls, name, path, target)


importlib.machinery.PathFinder.find_spec = classmethod(_hide_tensorflow)

if __name__ == "__main__":
    from lrnoise.cli import main

    sys.argv[0] = "lrnoise"
    try:
        main()
    finally:
        print(f"tensorflow imported: {'tensorflow' in sys.modules}", file=sys.stderr)
