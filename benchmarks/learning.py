"""Does pretraining learn? Frozen-encoder accuracy along each method's pretraining.

    python benchmarks/learning.py [--bench_methods=vcop,pace] [--bench_seeds=0,1,2] \
        [--bench_output_dir=benchmarks/results] [--bench_workdir=workdirs/learning] [--bench_quick]

For each method, with each seed: pretrain with `configs/bench/<method>.flags` on the embedded
dataset's training split (`python -m tfvssl.pretrain`), keeping the checkpoints at 25%, 50%
and 100% of the run; export the encoder at each of them and, as the 0% point, freshly
initialised (`python -m tfvssl.export [--checkpoint | --untrained]`: the same architecture
randomly initialised by the same seed, the baseline); evaluate every export frozen, with the
project's own evaluations on the same dataset:

- linear probe (`python -m tfvssl.probe --flagfile=configs/bench/probe.flags`): a linear head
  fit on the training split's labels, top-1 on the test split's videos (which pretraining
  never saw);
- retrieval (`python -m tfvssl.retrieve --flagfile=configs/bench/retrieval.flags`): test
  videos query the training videos, R@1 and R@5.

Writes into `--bench_output_dir`: `learning.json` (every number, per seed and as mean and
standard deviation over the seeds, the pretraining minutes and the final pretext accuracy),
`learning.md` (the README's table: the last checkpoint against random init, in %) and
`<method>.png` (probe top-1 and R@1 against pretraining steps, the random-init band
shaded, chance dashed). A method's pretraining workdirs stay under `--bench_workdir`; a run
already complete there is evaluated without retraining, so an interrupted benchmark resumes.

`--bench_quick` checks the whole path in under a minute a method: a few steps at tiny sizes,
one seed, the 0% and 100% points, in workdirs/learning_quick/ (results included); its numbers
mean nothing.
"""

import json
import os

import numpy as np
from absl import app, flags
from runs import REPO, directories, mean_std, pretrain, read_flags, run_module

# The evaluations run in this process: their flags, and those of every method the exports
# read from a run's flags.txt, must exist before the command line is parsed.
from tfvssl import export, methods, probe, retrieve  # noqa: F401

METHODS = tuple(methods.METHODS)

flags.DEFINE_list("bench_methods", list(METHODS), "Methods to benchmark.")
flags.DEFINE_list("bench_seeds", ["0", "1", "2"], "Pretraining seeds (also the probes' seeds).")
flags.DEFINE_string(
    "bench_output_dir", None,
    "Where learning.json and the plots go (default: benchmarks/results; with --bench_quick, "
    "<bench_workdir>/results).",
)
flags.DEFINE_string(
    "bench_workdir", None, "Pretraining workdirs (default: workdirs/learning; --bench_quick: workdirs/learning_quick)."
)
flags.DEFINE_list(
    "bench_fractions", None,
    "Points of the run evaluated, as fractions of its steps, multiples of 0.25 (the checkpoints "
    "kept); 0 is the untrained encoder (default: 0,0.25,0.5,1; with --bench_quick: 0,1).",
)
flags.DEFINE_boolean("bench_quick", False, "Tiny sizes, one seed, 0% and 100%: checks the path, < 60 s a method.")

FLAGS = flags.FLAGS

# --bench_quick: the bench configs at the tiny sizes of the unit tests (a dataset of 3 classes,
# 8 training and 2 test videos each, 24 frames of 32 px) and 2 pretraining steps.
QUICK_DATA = [
    "--synthetic_num_classes=3", "--synthetic_videos_per_class=8", "--synthetic_num_frames=24",
    "--synthetic_resolution=32",
]
_QUICK_BLOCKS = ["--resolution=32", "--num_blocks=4", "--block_length=2", "--frame_stride=1", "--pred_step=2"]
QUICK_PRETRAIN = {
    "dpc": [*_QUICK_BLOCKS, "--per_replica_batch_size=4"],
    "memdpc": [*_QUICK_BLOCKS, "--per_replica_batch_size=4"],
    "tcp": ["--resolution=32", "--num_segments=4", "--segment_length=4", "--ar_kernel_size=3,1,1", "--batch_size=4"],
    "pace": ["--clip_length=4", "--frame_size=32,32", "--resolution=32", "--batch_size=4"],
    "vcop": ["--clip_length=4", "--clip_interval=2", "--frame_size=32,32", "--resolution=32", "--batch_size=4"],
}
QUICK_COMMON = ["--train_steps=2", "--log_every=1", "--shuffle_buffer=8", "--val_batches=1", "--precision=float32"]
QUICK_EVAL = ["--epochs=2", "--lr_decay_epochs=1", "--batch_size=4", "--num_clips=1"]


def evaluate(workdir, step, fraction, seed, extra):
    """Exports the encoder of `workdir` at `step` (0: untrained) and scores it frozen.

    Returns:
      `{"step", "fraction", "probe_top1", "R@1", "R@5"}`.
    """
    name = f"at_{step}"
    export_dir = os.path.join(workdir, "export", name, "1")
    if not os.path.isdir(export_dir):
        source = ["--untrained"] if step == 0 else [f"--checkpoint={os.path.join(workdir, 'ckpt', f'ckpt-{step}')}"]
        run_module("export", [f"--workdir={workdir}", f"--export_name={name}", "--version=1", *source])
    scores = {"step": step, "fraction": fraction}
    out = os.path.join(workdir, "eval", name)
    probe_results = os.path.join(out, "probe", "results.json")
    if not os.path.isfile(probe_results):
        run_module("probe", [
            f"--flagfile={os.path.join(REPO, 'configs', 'bench', 'probe.flags')}", f"--encoder={export_dir}",
            f"--output_dir={os.path.dirname(probe_results)}", f"--seed={seed}", *extra,
        ])
    with open(probe_results) as f:
        scores["probe_top1"] = json.load(f)["video_level"]["top1"]
    retrieval = os.path.join(out, "retrieval", "retrieval.json")
    if not os.path.isfile(retrieval):
        run_module("retrieve", [
            f"--flagfile={os.path.join(REPO, 'configs', 'bench', 'retrieval.flags')}", f"--encoder={export_dir}",
            f"--output_dir={os.path.dirname(retrieval)}", *extra,
        ])
    with open(retrieval) as f:
        recall = json.load(f)["recall"]
    scores.update({"R@1": recall["R@1"], "R@5": recall["R@5"]})
    return scores


def summarise(runs):
    """Mean and std over seeds of every point of the curve, the random init and the end."""
    points = []
    for index, point in enumerate(runs[0]["curve"]):
        values = [run["curve"][index] for run in runs]
        points.append({
            "step": point["step"], "fraction": point["fraction"],
            **{key: mean_std([v[key] for v in values]) for key in ("probe_top1", "R@1", "R@5")},
        })
    return {
        "curve": points,
        "random_init": points[0],
        "final": points[-1],
        "pretext_accuracy": mean_std([run["pretext_accuracy"] for run in runs]),
        "minutes": mean_std([run["minutes"] for run in runs]),
    }


def markdown_table(report):
    """The README's table of `report["methods"]`: the last checkpoint against random init."""

    def cell(value, scale=100):
        if value is None:
            return "-"
        return f"{scale * value['mean']:.1f} ± {scale * value['std']:.1f}"

    rows = [
        "| method | seeds | budget: steps, minutes | pretext accuracy | probe top-1 | R@1 | random init: "
        "probe top-1 / R@1 | chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, result in report["methods"].items():
        summary = result["summary"]
        final, random = summary["final"], summary["random_init"]
        rows.append(
            f"| `{method}` | {len(result['runs'])} | {final['step']}, {summary['minutes']['mean']:.0f} "
            f"| {cell(summary['pretext_accuracy'])} | {cell(final['probe_top1'])} | {cell(final['R@1'])} "
            f"| {cell(random['probe_top1'])} / {cell(random['R@1'])} | {100 * result['chance']:.0f} |"
        )
    return "\n".join(rows) + "\n"


def plot(method, result, chance, path):
    """Probe top-1 and R@1 against pretraining steps: mean +- std over the seeds, the
    random-init band (mean +- std) shaded, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    steps = [p["step"] for p in summary["curve"]]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, key, label in zip(axes, ("probe_top1", "R@1"), ("linear probe top-1", "retrieval R@1")):
        mean = np.array([p[key]["mean"] for p in summary["curve"]])
        std = np.array([p[key]["std"] for p in summary["curve"]])
        random = summary["random_init"][key]
        axis.axhspan(random["mean"] - random["std"], random["mean"] + random["std"], color="grey", alpha=0.3)
        axis.axhline(random["mean"], color="grey", linewidth=1, label="random init (mean +- std)")
        axis.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
        axis.errorbar(steps, mean, yerr=std, marker="o", capsize=3, label=f"{method} ({len(result['runs'])} seeds)")
        axis.set_xlabel("pretraining steps")
        axis.set_ylabel(label)
        axis.set_ylim(0, 1)
        axis.legend(loc="upper left", fontsize=8)
    figure.suptitle(f"{method}: frozen encoder on the embedded dataset's test split")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def fractions_to_evaluate():
    default = ["0", "1"] if FLAGS.bench_quick else ["0", "0.25", "0.5", "1"]
    fractions = sorted(float(f) for f in FLAGS.bench_fractions or default)
    if fractions[0] != 0 or fractions[-1] != 1 or any(4 * f != int(4 * f) for f in fractions):
        raise app.UsageError("--bench_fractions: multiples of 0.25 from 0 (random init) to 1 (the end of the run)")
    return fractions


def benchmark_method(method, seeds):
    extra = [*QUICK_DATA, *QUICK_COMMON, *QUICK_PRETRAIN[method]] if FLAGS.bench_quick else []
    eval_extra = QUICK_EVAL if FLAGS.bench_quick else []
    fractions = fractions_to_evaluate()
    runs = []
    for seed in seeds:
        workdir = os.path.join(FLAGS.bench_workdir, method, f"seed{seed}")
        steps, minutes, accuracy = pretrain(os.path.join("configs", "bench", f"{method}.flags"), seed, workdir, extra)
        curve = []
        for fraction in fractions:
            step = int(round(fraction * steps)) if fraction < 1 else steps
            curve.append(evaluate(workdir, step, fraction, seed, eval_extra))
            print(f"{method} seed {seed} step {step}: {curve[-1]}", flush=True)
        runs.append({"seed": seed, "train_steps": steps, "minutes": minutes, "pretext_accuracy": accuracy,
                     "curve": curve, "workdir": os.path.relpath(workdir, REPO)})
    run_flags = read_flags(os.path.join(FLAGS.bench_workdir, method, f"seed{seeds[0]}", "flags.txt"))
    return {"flagfile": f"configs/bench/{method}.flags", "flags": run_flags, "runs": runs,
            "summary": summarise(runs)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = set(FLAGS.bench_methods) - set(METHODS)
    if unknown:
        raise app.UsageError(f"--bench_methods: unknown {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in FLAGS.bench_seeds][:1 if FLAGS.bench_quick else None]
    FLAGS.bench_workdir, FLAGS.bench_output_dir = directories(
        "learning", FLAGS.bench_workdir, FLAGS.bench_output_dir, FLAGS.bench_quick
    )
    path = os.path.join(FLAGS.bench_output_dir, "learning.json")
    report = {}
    if os.path.isfile(path):
        with open(path) as f:
            report = json.load(f)  # Methods benchmarked before keep their results.
    report.setdefault("methods", {})
    for method in FLAGS.bench_methods:
        result = benchmark_method(method, seeds)
        run_flags = result["flags"]
        num_classes = int(run_flags.get("synthetic_num_classes", 10))
        result["chance"] = 1 / num_classes
        report["methods"][method] = result
        report.update(quick=FLAGS.bench_quick)
        with open(path + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(path + ".tmp", path)
        with open(os.path.join(FLAGS.bench_output_dir, "learning.md"), "w") as f:
            f.write(markdown_table(report))
        plot(method, result, result["chance"], os.path.join(FLAGS.bench_output_dir, f"{method}.png"))
        final, random = result["summary"]["final"], result["summary"]["random_init"]
        print(
            f"{method}: probe top-1 {final['probe_top1']['mean']:.3f} +- {final['probe_top1']['std']:.3f} "
            f"(random init {random['probe_top1']['mean']:.3f}), R@1 {final['R@1']['mean']:.3f} "
            f"(random init {random['R@1']['mean']:.3f}), chance {result['chance']:.3f}", flush=True,
        )
    print(path)


if __name__ == "__main__":
    app.run(main)
