"""The repository's modules that are not part of the package (benchmarks/, examples/), for the tests."""
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repo_module(folder: str, name: str):
    """``import name`` from ``ROOT/folder`` (a folder of scripts, not on sys.path), leaving sys.path as it was."""
    path = str(ROOT / folder)
    sys.path.insert(0, path)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(path)
