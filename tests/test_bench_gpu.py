"""benchmarks/bench_gpu.py at tiny size on the CPU: every part runs and the JSON holds what the GPU check reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_reports_training_and_both_decoders_eager_and_compiled(bench, capsys):
    compile_args = [] if bench.has_c_compiler() else ["--no_compile"]
    result = bench.main(["--quick", "--device", "cpu", "--dtype", "fp32", "--steps", "1", "--budget_s", "600",
                         *compile_args])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))  # the printed JSON is the result
    assert result["size"] == [32, 64] and result["config"].endswith("tiny.json") and result["parameters"] > 0
    assert result["fast_schedule"]["guidance_scale"] == 1.0 and len(result["fast_schedule"]["timesteps"]) == 2
    modes = ["eager"] + (["compiled"] if bench.has_c_compiler() else [])
    for key in ("train", "decode_paper", "decode_fast"):
        for mode in modes:
            part = result[key][mode]
            assert "error" not in part and "skipped" not in part, (key, mode, part)
            assert part["seconds"] > 0
    assert result["train"]["eager"]["steps_per_second"] > 0 and result["train"]["eager"]["batch_size"] == 2
    # the paper sampler: 100-step spacing from t <= 200 with guidance (two passes a step); the student: 2 passes
    assert result["decode_paper"]["eager"]["unet_evaluations"] == 2 * 20
    assert result["decode_fast"]["eager"]["unet_evaluations"] == 2
    if "compiled" in modes:
        assert result["train"]["compiled_speedup"] > 0 and result["compile_backend"] == "inductor"
    else:
        assert "compiled" not in result["train"] and result["compile_skipped"]


def test_a_part_that_does_not_fit_the_budget_is_skipped_and_says_so(bench):
    budget = bench.Budget(10.0)
    results = {}
    bench.run_part(results, "train", "compiled", budget, 1e6, lambda: pytest.fail("a skipped part must not run"))
    assert results["train"]["compiled"]["skipped"].startswith("time budget")
    bench.run_part(results, "decode_fast", "eager", budget, 0.0, lambda: 1 / 0)
    assert results["decode_fast"]["eager"]["error"].startswith("ZeroDivisionError")
