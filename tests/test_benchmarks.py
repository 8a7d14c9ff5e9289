"""Smoke test of the benchmark scripts: they run on tiny inputs and report every number they
promise. Speed is never asserted (it depends on the machine)."""

import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def test_input_pipeline_benchmark_reports_the_three_paths(tmp_path):
    output = tmp_path / "result.json"
    result = subprocess.run(
        [
            sys.executable, "benchmarks/input_pipeline.py", "--bench_methods=dpc",
            f"--bench_data_dir={tmp_path / 'data'}", "--bench_frame_size=32", "--bench_video_frames=12",
            "--bench_videos=4", "--bench_batch_size=2", "--bench_warmup=0", "--bench_batches=1",
            f"--bench_json={output}",
            # DPC with tiny blocks, so that 12-frame videos suffice.
            "--resolution=32", "--num_blocks=4", "--block_length=2", "--frame_stride=1", "--pred_step=2",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    header, row = result.stdout.strip().splitlines()[-2:]
    assert header.split() == [
        "method", "tfrecord", "clips/s", "ceiling", "clips/s", "on_the_fly", "clips/s", "%", "of",
        "ceiling", "x", "on", "the", "fly",
    ]
    assert row.split()[0] == "dpc"
    with open(output) as f:
        report = json.load(f)
    rates = report["clips_per_second"]["dpc"]
    assert set(rates) == {"tfrecord", "ceiling", "on_the_fly"} and all(rate > 0 for rate in rates.values())
    assert set(report["cpu_ms_per_clip"]["dpc"]) == set(rates)
    assert (report["frame_size"], report["batch_size"], report["batches"]) == (32, 2, 1)


def test_learning_benchmark_quick_mode_writes_its_json_and_plot(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "benchmarks/learning.py", "--bench_quick", "--bench_methods=pace",
            f"--bench_output_dir={tmp_path / 'out'}", f"--bench_workdir={tmp_path / 'work'}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "pace.png").stat().st_size > 0
    assert "| `pace` | 1 | 2, " in (tmp_path / "out" / "learning.md").read_text()
    with open(tmp_path / "out" / "learning.json") as f:
        report = json.load(f)
    pace = report["methods"]["pace"]
    assert [point["step"] for point in pace["runs"][0]["curve"]] == [0, 2]
    for point in pace["summary"]["curve"]:
        assert all(0 <= point[key]["mean"] <= 1 for key in ("probe_top1", "R@1", "R@5"))
    # The run's flags.txt names pretraining flags only: the command-line tools can read it.
    run_flags = (tmp_path / "work" / "pace" / "seed0" / "flags.txt").read_text()
    assert "--method=pace" in run_flags and "--aggregate" not in run_flags
    # The 0% point is the untrained encoder, the other a checkpoint of the run.
    exports = tmp_path / "work" / "pace" / "seed0" / "export"
    assert json.loads((exports / "at_0" / "1" / "export_info.json").read_text())["checkpoint"] is None
    assert json.loads((exports / "at_2" / "1" / "export_info.json").read_text())["checkpoint"].endswith("ckpt-2")


def test_train_step_benchmark_writes_its_report(tmp_path):
    output = tmp_path / "train_step.json"
    result = subprocess.run(
        [
            sys.executable, "benchmarks/train_step.py", "--quick", "--bench_methods=dpc",
            "--bench_precisions=float32", f"--bench_json={output}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    with open(output) as f:
        report = json.load(f)
    (run,) = report["results"]
    assert (run["method"], run["size"], run["precision"], run["batch_size"]) == ("dpc", "tiny", "float32", 2)
    assert run["seconds_per_step"] > 0 and run["cpu_seconds_per_step"] > 0 and run["flops_per_step"] > 0
    assert run["input_shapes"]["blocks"] == [2, 4, 2, 32, 32, 3]
