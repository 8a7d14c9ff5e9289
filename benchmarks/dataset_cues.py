"""What tells the embedded dataset's classes apart: appearance or motion?

    python benchmarks/dataset_cues.py [--cues_json=benchmarks/results/dataset_cues.json]

Renders the learning benchmark's dataset (`configs/bench/data.flags`: 10 classes, 1,200
training and 300 test videos; `tfvssl.data.synthetic`, deterministic) and fits the same
linear classifier (ridge regression onto one-hot labels, standardised features) on
hand-made features of the training videos, scored on the test videos:

- `frame`: what one frame shows: the middle frame as an 8x8 RGB thumbnail and its colour
  histograms (8 bins a channel);
- `still`: the static content of the whole video: the mean frame's 8x8 thumbnail;
- `motion`: a crude optical flow: on an 8x8 grid, the means over the video of the grey
  temporal gradient times the spatial gradients (It*Ix, It*Iy: signed, they follow the
  direction of motion) and of |It|;
- `pooled_motion`: the same three means over the whole frame (three numbers a video).

A fair motion benchmark has `frame` and `still` at chance and `motion` well above it: then a
representation can only separate the classes by encoding motion. No TensorFlow involved.
"""

import dataclasses
import json
import os

import numpy as np
from absl import app, flags

from tfvssl.data import synthetic

flags.DEFINE_string("cues_json", None, "Write the accuracies here as JSON.")
flags.DEFINE_float("cues_ridge", 10.0, "Ridge penalty of the linear classifier.", lower_bound=0.0)

FLAGS = flags.FLAGS
GRID = 8

DATA_FLAGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs", "bench", "data.flags")


def bench_config(path=DATA_FLAGS):
    """The `SyntheticConfig` of a flagfile of `--synthetic_*` flags (`configs/bench/data.flags`),
    with the test split a quarter of the training split, as `tfvssl.pretrain` makes it."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("--synthetic_"):
                name, value = line[len("--synthetic_"):].split("=", 1)
                values[name] = value
            elif line.startswith("--nosynthetic_"):
                values[line[len("--nosynthetic_"):]] = "false"
    fields = {field.name: field.type for field in dataclasses.fields(synthetic.SyntheticConfig)}
    parse = {int: int, float: float, bool: lambda v: v.lower() in ("1", "true")}
    config = {("train_videos_per_class" if k == "videos_per_class" else k): v for k, v in values.items()}
    config = {k: parse[fields[k]](v) for k, v in config.items()}
    return synthetic.SyntheticConfig(**config, test_videos_per_class=max(1, config["train_videos_per_class"] // 4))


CONFIG = bench_config()


def cells(images):
    """`[..., S, S]` -> `[..., GRID * GRID]`: means over the cells of a GRID x GRID grid."""
    size = images.shape[-1]
    blocks = images.reshape(*images.shape[:-2], GRID, size // GRID, GRID, size // GRID)
    return blocks.mean(axis=(-3, -1)).reshape(*images.shape[:-2], GRID * GRID)


def features(frames):
    """uint8 `[T, S, S, 3]` -> dict of 1-D feature vectors (see the module docstring)."""
    video = frames.astype(np.float32) / 255
    middle = video[len(video) // 2]
    histograms = [np.histogram(middle[..., c], bins=8, range=(0, 1))[0] / middle[..., c].size for c in range(3)]
    grey = video.mean(axis=-1)
    temporal = np.diff(grey, axis=0)
    dy, dx = np.gradient(grey[:-1], axis=(1, 2))
    return {
        "frame": np.concatenate([cells(np.moveaxis(middle, -1, 0)).ravel(), *histograms]),
        "still": cells(np.moveaxis(video.mean(axis=0), -1, 0)).ravel(),
        "motion": np.concatenate([
            cells(temporal * dx).mean(axis=0), cells(temporal * dy).mean(axis=0), cells(np.abs(temporal)).mean(axis=0),
        ]),
        # The same three measures averaged over the whole frame: what survives the global
        # pooling every encoder's embedding ends with.
        "pooled_motion": np.array([(temporal * dx).mean(), (temporal * dy).mean(), np.abs(temporal).mean()]),
    }


def split_features(split):
    """`({name: [V, D]}, [V] labels)` of every video of `split`."""
    rows, labels = [], []
    for _, label, frames in synthetic.iter_split(CONFIG, split):
        rows.append(features(frames))
        labels.append(label)
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}, np.array(labels)


def ridge_accuracy(train, train_labels, test, test_labels, penalty):
    """Top-1 of a one-vs-rest ridge classifier fit on standardised `train`, scored on `test`."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-8
    x, x_test = (train - mean) / std, (test - mean) / std
    x, x_test = np.pad(x, [(0, 0), (0, 1)], constant_values=1), np.pad(x_test, [(0, 0), (0, 1)], constant_values=1)
    targets = np.eye(CONFIG.num_classes)[train_labels]
    weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ targets)
    return float(np.mean(np.argmax(x_test @ weights, axis=1) == test_labels))


def main(argv):
    del argv
    train, train_labels = split_features("train")
    test, test_labels = split_features("test")
    report = {
        "chance": 1 / CONFIG.num_classes,
        "num_train": len(train_labels),
        "num_test": len(test_labels),
        "top1": {
            name: ridge_accuracy(train[name], train_labels, test[name], test_labels, FLAGS.cues_ridge)
            for name in train
        },
    }
    for name, accuracy in report["top1"].items():
        print(f"{name:8s} top-1 {accuracy:.3f} (chance {report['chance']:.3f}, {report['num_test']} test videos)")
    if FLAGS.cues_json:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.cues_json)), exist_ok=True)
        with open(FLAGS.cues_json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    app.run(main)
