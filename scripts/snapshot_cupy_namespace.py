"""Write tests/cupy_namespace.json: the public names of CuPy, cupy.linalg and cupy.ndarray.

The CuPy stand-in (tests/cupy_standin.py) lets code reach only names that real CuPy has, so
a function NumPy has and CuPy lacks fails on a machine without a GPU too. Run this with any
CuPy installed (no GPU is needed: nothing here touches a device) when CuPy's API moves:

    python scripts/snapshot_cupy_namespace.py
"""
import json
import pathlib

import cupy


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


out = {
    "version": cupy.__version__,
    "cupy": public(cupy),
    "cupy.linalg": public(cupy.linalg),
    "cupy.ndarray": sorted(set(public(cupy.ndarray)) | {"__len__", "__iter__", "__float__", "__int__",
                                                         "__bool__", "__getitem__", "__setitem__"}),
}
path = pathlib.Path(__file__).resolve().parents[1] / "tests" / "cupy_namespace.json"
path.write_text(json.dumps(out, indent=0) + "\n")
print(f"wrote {path} (CuPy {out['version']}: {len(out['cupy'])} names)")
