"""Does one 1-s clip of the embedded Oops data show its failure? A check without learning.

    python benchmarks/oops_visibility.py [--stride=6] [--noclutter]

Renders the README's embedded Oops dataset (`tfvssl.data.synthetic` in the oops mode: 10
classes, 128 frames at 25 fps, 64 px, 240 training and 60 test videos; deterministic), cuts
every video into the Oops protocol's clips (`tfvssl.data.oops_labels`: 1 s, one every
0.25 s, labelled intentional / transitional / unintentional by the failure time) and fits a
class-balanced logistic regression on hand-made features of the frames an encoder sees of
each clip (`--frames` of them, `--stride` apart from its first, as `oops_labels.step_frames`):
on a 4x4 grid of the grey frames, the mean and the spread over time of the absolute frame
differences (motion energy) and of the absolute horizontal gradient (edges). Prints the
test clips' accuracy, overall, mean over the classes and per class. The encoder has to do
at least as well from its features for the classifier to beat the time prior.
"""

import numpy as np
from absl import app, flags
from sklearn.linear_model import LogisticRegression

from tfvssl.data import oops_labels, synthetic

flags.DEFINE_integer("stride", 6, "Source frames between the frames taken of a clip (the pretraining stride).")
flags.DEFINE_integer("frames", 4, "Frames taken of a clip (the pretraining block length).", lower_bound=2)
flags.DEFINE_boolean("clutter", True, "Textured backgrounds, distractors and camera shake (synthetic `clutter`).")
FLAGS = flags.FLAGS

GRID = 4


def grid_means(maps):
    """float `[N, S, S]` -> `[N, GRID * GRID]` means over the cells of a GRID x GRID grid."""
    n, size = maps.shape[:2]
    cell = size // GRID
    return maps.reshape(n, GRID, cell, GRID, cell).mean(axis=(2, 4)).reshape(n, GRID * GRID)


def clip_features(frames):
    """Grey float `[N, S, S]` frames of one clip -> `[4 * GRID * GRID]` features: the mean and
    the standard deviation over time of the grid's motion energy and edge strength."""
    energy = grid_means(np.abs(np.diff(frames, axis=0)))
    edges = grid_means(np.abs(frames - np.roll(frames, 1, axis=2)))
    return np.concatenate([energy.mean(0), energy.std(0), edges.mean(0), edges.std(0)])


def split_features(config, split, stride, num_frames):
    """`(features [C, F], labels [C])` of every clip of every video of `split`."""
    grid = oops_labels.clip_grid(config.num_frames, config.fps)
    taken = oops_labels.step_frames(grid["frames"], num_frames, stride, config.num_frames).numpy()  # [K, n]
    features, labels = [], []
    for index, (_, _, video) in enumerate(synthetic.iter_split(config, split)):
        failure = synthetic.video_failure(config, split, index)
        labels.append(oops_labels.clip_labels(grid["start"], grid["end"], failure.time).numpy())
        grey = video.astype(np.float32).mean(axis=-1)
        features.extend(clip_features(grey[clip]) for clip in taken)
    return np.array(features), np.concatenate(labels)


def main(argv):
    del argv
    config = synthetic.SyntheticConfig(
        num_classes=10, resolution=64, num_frames=128, train_videos_per_class=24, test_videos_per_class=6,
        oops=True, clutter=FLAGS.clutter,
    )
    train_x, train_y = split_features(config, "train", FLAGS.stride, FLAGS.frames)
    test_x, test_y = split_features(config, "test", FLAGS.stride, FLAGS.frames)
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
    model = LogisticRegression(class_weight="balanced", max_iter=3000).fit((train_x - mean) / scale, train_y)
    predicted = model.predict((test_x - mean) / scale)
    per_class = [float(np.mean(predicted[test_y == label] == label)) for label in range(3)]
    print(
        f"clutter={FLAGS.clutter} frames={FLAGS.frames} stride={FLAGS.stride}: {len(test_y)} test clips, "
        f"accuracy {np.mean(predicted == test_y):.3f}, mean class {np.mean(per_class):.3f}, "
        + ", ".join(f"{name} {value:.3f}" for name, value in zip(oops_labels.CLASS_NAMES, per_class))
    )


if __name__ == "__main__":
    app.run(main)
