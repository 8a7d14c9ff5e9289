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
representation can only separate the classes by encoding motion. The features and the
classifier are NumPy.
"""

import json
import os

import numpy as np
from absl import app, flags

from tfvssl import pretrain  # Defines the --synthetic_* flags of configs/bench/data.flags.
from tfvssl.data import synthetic

flags.DEFINE_string("cues_json", None, "Write the accuracies here as JSON.")
flags.DEFINE_float("cues_ridge", 10.0, "Ridge penalty of the linear classifier.", lower_bound=0.0)

FLAGS = flags.FLAGS
GRID = 8

DATA_FLAGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs", "bench", "data.flags")


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


def split_features(config, split):
    """`({name: [V, D]}, [V] labels)` of every video of `split` of the `SyntheticConfig`."""
    rows, labels = [], []
    for _, label, frames in synthetic.iter_split(config, split):
        rows.append(features(frames))
        labels.append(label)
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}, np.array(labels)


def ridge_accuracy(train, train_labels, test, test_labels, num_classes, penalty):
    """Top-1 of a one-vs-rest ridge classifier fit on standardised `train`, scored on `test`."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-8
    x, x_test = (train - mean) / std, (test - mean) / std
    x, x_test = np.pad(x, [(0, 0), (0, 1)], constant_values=1), np.pad(x_test, [(0, 0), (0, 1)], constant_values=1)
    targets = np.eye(num_classes)[train_labels]
    weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ targets)
    return float(np.mean(np.argmax(x_test @ weights, axis=1) == test_labels))


def main(argv):
    # The benchmark's dataset, as `tfvssl.pretrain` makes it from the same flagfile.
    FLAGS([argv[0], f"--flagfile={DATA_FLAGS}"], known_only=True)
    config = pretrain.synthetic_config(FLAGS)
    train, train_labels = split_features(config, "train")
    test, test_labels = split_features(config, "test")
    report = {
        "chance": 1 / config.num_classes,
        "num_train": len(train_labels),
        "num_test": len(test_labels),
        "top1": {
            name: ridge_accuracy(
                train[name], train_labels, test[name], test_labels, config.num_classes, FLAGS.cues_ridge
            )
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
