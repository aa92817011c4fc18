"""The benchmark script runs end to end on a tiny config (a couple of steps, no timing claims).

PyTorch is never needed: ``--no-torch`` keeps the comparison out even where torch is installed."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_step_smoke(tmp_path):
    out = tmp_path / "smoke"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--configs", "smoke", "--steps", "2",
         "--warmup", "1", "--threads", "1", "--no-torch", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    (row,) = data["rows"]
    assert row["config"] == "smoke" and row["ms_median"] > 0 and row["bound_ms"] > 0
    assert row["peak_mb"] > 0 and row["needed_mb"] > 0
    assert "torch_ms_median" not in row
    assert "| smoke |" in out.with_suffix(".md").read_text()


def test_bench_step_cupy_branch_on_the_standin(tmp_path):
    """The benchmark's CuPy branch (device arrays, synchronisation, the memory pool, the GPU table) on
    the CPU stand-in of cupy_standin.py, so the GPU run does not spend its minutes on a Python error."""
    from cupy_standin import install

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_step
        with install():
            rows = bench_step.main(bench_step.parse_args(
                ["--backend", "cupy", "--configs", "smoke", "--batch", "8,16", "--steps", "2", "--warmup", "1",
                 "--no-torch", "--out", str(tmp_path / "gpu")]))
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert [r["dims"][0] for r in rows] == [8, 16] and all(r["ms_median"] > 0 for r in rows)
    assert "stand-in" in (tmp_path / "gpu.md").read_text()
