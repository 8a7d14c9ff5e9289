"""Does MemDPC's pretraining help to see failures? The Oops classifier on the embedded variant.

    python benchmarks/oops_embedded.py [--bench_seeds=0,1,2] [--bench_output_dir=benchmarks/results] \
        [--bench_workdir=workdirs/oops_embedded] [--bench_quick]

For each seed: pretrain MemDPC with `configs/bench/oops_memdpc.flags` on the training videos of
the embedded Oops variant (every video holds a failure), keeping a checkpoint at every quarter
of the run; export the encoder at each (`python -m tfvssl.export --checkpoint`) and train and
test the frozen Oops classifier of `configs/bench/oops.flags` on it (`python -m tfvssl.oops`:
MemDPC's predictive classifier, windows of 4 one-second clips that may start before the video),
and at the end also on one-clip windows; the baseline is the same classifier on the same model
randomly initialised by the same seed (`--random_init`), in both windows.

Writes into `--bench_output_dir`: `oops.json` (every run's clip accuracy overall, mean class and
per class, the time prior's and the majority class's, and the mean and standard deviation over
the seeds), `oops.md` (the README's table) and `oops.png` (accuracy and mean class accuracy
against pretraining steps, the random encoder's band shaded, the time prior dashed). Workdirs
stay under `--bench_workdir`; runs and evaluations found complete there are reused.

`--bench_quick` checks the whole path at tiny sizes (one seed, a few steps, in
workdirs/oops_embedded_quick/); its numbers mean nothing.
"""

import json
import os

import numpy as np
from absl import app, flags
from runs import REPO, directories, mean_std, pretrain, run_module

# The tools run in this process: their flags must exist before the command line is parsed.
from tfvssl import export, oops  # noqa: F401
from tfvssl.eval import unintentional

PRETRAIN_FLAGS = os.path.join("configs", "bench", "oops_memdpc.flags")
CLASSIFIER_FLAGS = os.path.join("configs", "bench", "oops.flags")
WINDOWS = {"padded": [], "one_clip": ["--num_steps=1"]}
SCORES = ("accuracy", "mean_class_accuracy")

flags.DEFINE_list("bench_seeds", ["0", "1", "2"], "Pretraining seeds (also the classifiers' seeds).")
flags.DEFINE_string("bench_output_dir", None, "Where oops.json and oops.png go (default: benchmarks/results).")
flags.DEFINE_string("bench_workdir", None, "Pretraining workdirs (default: workdirs/oops_embedded[_quick]).")
flags.DEFINE_boolean("bench_quick", False, "Tiny sizes, one seed, a few steps: checks the path.")

FLAGS = flags.FLAGS

# --bench_quick: 2 classes of 3 training and 2 test videos, 3.2 s of 32 px; 4 steps.
QUICK_PRETRAIN = [
    "--synthetic_num_classes=2", "--synthetic_videos_per_class=3", "--synthetic_num_frames=80",
    "--synthetic_resolution=32", "--resolution=32", "--block_length=2", "--frame_stride=3",
    "--per_replica_batch_size=4", "--train_steps=4", "--log_every=1", "--shuffle_buffer=8",
]
QUICK_CLASSIFIER = ["--epochs=1", "--lr_decay_epochs=1", "--batch_size=4", "--clips_per_video=2", "--num_steps=2"]


def classify(encoder, output_dir, seed, extra):
    """The Oops classifier's clip-level results on `encoder` (trained and tested unless found)."""
    path = os.path.join(output_dir, unintentional.RESULTS_FILE)
    if not os.path.isfile(path):
        run_module("oops", [
            f"--flagfile={CLASSIFIER_FLAGS}", f"--encoder={encoder}", f"--output_dir={output_dir}",
            f"--seed={seed}", *extra,
        ])
    with open(path) as f:
        level = json.load(f)["clip_level"]
    return {key: level[key] for key in (
        "accuracy", "mean_class_accuracy", "per_class_accuracy", "majority_class_accuracy", "time_prior_accuracy",
        "time_prior_mean_class_accuracy", "time_prior_per_class_accuracy",
    )}


def benchmark_seed(seed, extra):
    """Pretrains one seed and scores the classifier along the run and on its random init."""
    workdir = os.path.join(FLAGS.bench_workdir, f"seed{seed}")
    steps, minutes, pretext = pretrain(PRETRAIN_FLAGS, seed, workdir, extra)
    classifier_extra = QUICK_CLASSIFIER if FLAGS.bench_quick else []
    evaluations = os.path.join(workdir, "oops")
    run = {"seed": seed, "train_steps": steps, "minutes": minutes, "pretext_accuracy": pretext,
           "workdir": os.path.relpath(workdir, REPO), "random_init": {}, "curve": []}
    for windows, window_flags in WINDOWS.items():
        run["random_init"][windows] = classify(
            workdir, os.path.join(evaluations, f"random_{windows}"), seed, [*classifier_extra, "--random_init",
                                                                             *window_flags],
        )
    for quarter in (1, 2, 3, 4):
        step = steps * quarter // 4
        name = f"at_{step}"
        export_dir = os.path.join(workdir, "export", name, "1")
        if not os.path.isdir(export_dir):
            checkpoint = os.path.join(workdir, "ckpt", f"ckpt-{step}")
            run_module("export", [f"--workdir={workdir}", f"--export_name={name}", "--version=1",
                                  f"--checkpoint={checkpoint}"])
        point = {"step": step}
        for windows, window_flags in WINDOWS.items():
            if windows == "padded" or quarter == 4:  # One-clip windows: at the end only.
                point[windows] = classify(
                    export_dir, os.path.join(evaluations, f"{name}_{windows}"), seed, [*classifier_extra,
                                                                                       *window_flags],
                )
        run["curve"].append(point)
        print(f"seed {seed} step {step}: {json.dumps({w: point[w]['accuracy'] for w in WINDOWS if w in point})}",
              flush=True)
    return run


def summarise(runs):
    """Mean and std over the seeds of each score: along the run (padded windows), at its end and
    on the random init (both windows), and of the time prior."""

    def scores(results):
        return {key: mean_std([r[key] for r in results]) for key in SCORES}

    final = {windows: scores([run["curve"][-1][windows] for run in runs]) for windows in WINDOWS}
    return {
        "curve": [
            {"step": point["step"], "padded": scores([run["curve"][i]["padded"] for run in runs])}
            for i, point in enumerate(runs[0]["curve"])
        ],
        "final": final,
        "random_init": {windows: scores([run["random_init"][windows] for run in runs]) for windows in WINDOWS},
        "pretext_accuracy": mean_std([run["pretext_accuracy"] for run in runs]),
        "minutes": mean_std([run["minutes"] for run in runs]),
    }


def markdown_table(report):
    """The README's table: per seed and as mean ± std, pretrained against random init, in %."""
    rows = [
        "| encoder | seed | windows | accuracy | mean class | intentional | transitional | unintentional |",
        "|---|---|---|---|---|---|---|---|",
    ]
    steps = report["runs"][0]["train_steps"]
    for windows in WINDOWS:
        for label, pick in ((f"MemDPC, {steps} steps", lambda run: run["curve"][-1][windows]),
                            ("random initialisation", lambda run: run["random_init"][windows])):
            for run in report["runs"]:
                result = pick(run)
                per_class = " | ".join(f"{100 * v:.1f}" for v in result["per_class_accuracy"].values())
                rows.append(
                    f"| {label} | {run['seed']} | {windows.replace('_', ' ')} | {100 * result['accuracy']:.1f} "
                    f"| {100 * result['mean_class_accuracy']:.1f} | {per_class} |"
                )
            summary = report["summary"]["final" if label.startswith("MemDPC") else "random_init"][windows]
            cells = " | ".join(f"{100 * summary[k]['mean']:.1f} ± {100 * summary[k]['std']:.1f}" for k in SCORES)
            rows.append(f"| **{label}** | mean ± std | {windows.replace('_', ' ')} | {cells} | | | |")
    prior = report["runs"][0]["random_init"]["padded"]
    per_class = " | ".join(f"{100 * v:.1f}" for v in prior["time_prior_per_class_accuracy"].values())
    rows.append(
        f"| time prior | | | {100 * prior['time_prior_accuracy']:.1f} | "
        f"{100 * prior['time_prior_mean_class_accuracy']:.1f} | {per_class} |"
    )
    rows.append(f"| majority class | | | {100 * prior['majority_class_accuracy']:.1f} | 33.3 | | | |")
    return "\n".join(rows) + "\n"


def plot(report, path):
    """Accuracy and mean class accuracy (padded windows) against pretraining steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, prior = report["summary"], report["runs"][0]["random_init"]["padded"]
    steps = [point["step"] for point in summary["curve"]]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, key, label in zip(axes, SCORES, ("clip accuracy", "mean class accuracy")):
        mean = np.array([point["padded"][key]["mean"] for point in summary["curve"]])
        std = np.array([point["padded"][key]["std"] for point in summary["curve"]])
        random = summary["random_init"]["padded"][key]
        axis.axhspan(random["mean"] - random["std"], random["mean"] + random["std"], color="grey", alpha=0.3)
        axis.axhline(random["mean"], color="grey", linewidth=1, label="random init (mean +- std)")
        axis.axhline(prior[f"time_prior_{key}"], color="black", linestyle="--", linewidth=1, label="time prior")
        axis.errorbar(steps, mean, yerr=std, marker="o", capsize=3, label=f"MemDPC ({len(report['runs'])} seeds)")
        axis.set_xlabel("pretraining steps")
        axis.set_ylabel(label)
        axis.set_ylim(0.2, 1)
        axis.legend(loc="lower right", fontsize=8)
    figure.suptitle("Oops classifier (frozen, padded windows) on the embedded variant's test videos")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    seeds = [int(s) for s in FLAGS.bench_seeds][:1 if FLAGS.bench_quick else None]
    FLAGS.bench_workdir, FLAGS.bench_output_dir = directories(
        "oops_embedded", FLAGS.bench_workdir, FLAGS.bench_output_dir, FLAGS.bench_quick
    )
    extra = QUICK_PRETRAIN if FLAGS.bench_quick else []
    runs = [benchmark_seed(seed, extra) for seed in seeds]
    report = {"pretrain_flagfile": PRETRAIN_FLAGS, "classifier_flagfile": CLASSIFIER_FLAGS,
              "quick": FLAGS.bench_quick, "runs": runs, "summary": summarise(runs)}
    path = os.path.join(FLAGS.bench_output_dir, "oops.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(FLAGS.bench_output_dir, "oops.md"), "w") as f:
        f.write(markdown_table(report))
    plot(report, os.path.join(FLAGS.bench_output_dir, "oops.png"))
    for windows in WINDOWS:
        final, random = report["summary"]["final"][windows], report["summary"]["random_init"][windows]
        print(f"{windows}: pretrained {final['accuracy']['mean']:.3f} +- {final['accuracy']['std']:.3f}, random init "
              f"{random['accuracy']['mean']:.3f} +- {random['accuracy']['std']:.3f}", flush=True)
    print(path)


if __name__ == "__main__":
    app.run(main)
