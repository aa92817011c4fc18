"""Write tests/cupy_namespace.json: the public names of CuPy, cupy.linalg and cupy.ndarray.

The CuPy stand-in (tests/cupy_standin.py) lets code reach only names that real CuPy has, so
a function NumPy has and CuPy lacks fails on a machine without a GPU too. Run this with any
CuPy installed (no GPU is needed: nothing here touches a device) when CuPy's API moves:

    python scripts/snapshot_cupy_namespace.py
"""
import argparse
import json
import pathlib

DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "cupy_namespace.json"


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def main(path: pathlib.Path) -> None:
    try:
        import cupy
    except ImportError:
        raise SystemExit("snapshot_cupy_namespace.py: CuPy is not installed here; install any CuPy "
                         "(pip install cupy-cuda12x: no GPU is needed) and run it again") from None
    out = {
        "version": cupy.__version__,
        "cupy": public(cupy),
        "cupy.linalg": public(cupy.linalg),
        "cupy.ndarray": sorted(set(public(cupy.ndarray)) | {"__len__", "__iter__", "__float__", "__int__",
                                                             "__bool__", "__getitem__", "__setitem__"}),
    }
    path.write_text(json.dumps(out, indent=0) + "\n")
    print(f"wrote {path} (CuPy {out['version']}: {len(out['cupy'])} names)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help=f"where to write (default {DEFAULT_OUT})")
    main(ap.parse_args().out)
