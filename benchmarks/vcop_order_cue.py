"""Why VCOP stays at chance on the embedded videos: where the order of their clips shows.

    python benchmarks/vcop_order_cue.py [--cue_steps=150]

1. Stationarity: for tuples of 3 clips (8 frames, 4 apart) of the embedded training videos in
   temporal order, the mean distance between the clips of a tuple against the mean distance
   between the first clips of different videos, for the clips' mean colour, their mean on an
   8x8 grid and the pooled feature of a randomly initialised R3D (moving-statistics
   BatchNorm). A large ratio means the clips of a video look alike to that feature.
2. Control: the VCOP model (R3D, 32 px, batch 8, Adam 1e-3) trained on the same videos as
   rendered, and with their brightness ramped from 40% to 100% over the video (an order cue
   that global pooling keeps); the order accuracy, averaged over every 25 steps.

Uses the VCOP model and sampler of `tfvssl`; the videos come from `tfvssl.data.synthetic`
(deterministic), 20 a class of 10 classes, 64 frames.
"""

import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from tfvssl.data import sampling, synthetic
from tfvssl.models.vcop_model import ClipOrderPrediction

flags.DEFINE_integer("cue_steps", 150, "Training steps of each control run.", lower_bound=25)
flags.DEFINE_integer("cue_resolution", 32, "Frame size of the rendered videos.", lower_bound=16)

FLAGS = flags.FLAGS
CLIP_LENGTH, INTERVAL, TUPLE_LENGTH, BATCH = 8, 4, 3, 8


def render(resolution):
    """float32 `[V, 64, S, S, 3]` training videos in [0, 1]."""
    config = synthetic.SyntheticConfig(num_classes=10, num_frames=64, resolution=resolution, train_videos_per_class=20)
    return np.stack([frames for _, _, frames in synthetic.iter_split(config, "train")]).astype(np.float32) / 255


def temporal_tuples(videos, rng, count):
    """`[count, n, L, S, S, 3]` tuples of clips in temporal order, from random videos and starts."""
    span = sampling.vcop_span(CLIP_LENGTH, INTERVAL, TUPLE_LENGTH)
    tuples = []
    for _ in range(count):
        video = videos[rng.integers(len(videos))]
        start = rng.integers(video.shape[0] - span + 1)
        tuples.append(np.stack([
            video[start + i * (CLIP_LENGTH + INTERVAL):][:CLIP_LENGTH] for i in range(TUPLE_LENGTH)
        ]))
    return np.stack(tuples)


def distance_ratio(features):
    """Mean distance between the first clips of different tuples / between clips of a tuple."""
    within = np.mean([
        np.linalg.norm(features[:, i] - features[:, j], axis=-1).mean()
        for i in range(TUPLE_LENGTH) for j in range(i + 1, TUPLE_LENGTH)
    ])
    first = features[:, 0]
    between = np.linalg.norm(first[:, None] - first[None, :], axis=-1)[~np.eye(len(first), dtype=bool)].mean()
    return float(between / within)


def stationarity(videos, rng):
    tuples = temporal_tuples(videos, rng, 32)
    clips = tuples.reshape(-1, *tuples.shape[2:])
    size = clips.shape[2]
    encoder = ClipOrderPrediction(
        backbone="r3d", clip_length=CLIP_LENGTH, resolution=size, tuple_length=TUPLE_LENGTH
    ).build_encoder()
    features = {
        "mean colour": clips.mean(axis=(1, 2, 3)),
        "8x8 grid": clips.mean(axis=1).reshape(len(clips), 8, size // 8, 8, size // 8, 3).mean(axis=(2, 4)),
        "random R3D p5": encoder(clips, training=False)["embedding"].numpy(),
    }
    for name, values in features.items():
        ratio = distance_ratio(values.reshape(len(tuples), TUPLE_LENGTH, -1))
        print(f"{name:14s}: clips of one video {ratio:5.1f}x closer than clips of different videos", flush=True)


def train_order(videos, steps, seed=0):
    """Trains a fresh VCOP model; prints the order accuracy of every 25 steps."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = ClipOrderPrediction(
        backbone="r3d", clip_length=CLIP_LENGTH, resolution=videos.shape[2], tuple_length=TUPLE_LENGTH
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    step = tf.function(model.train_step)
    permutations = sampling.vcop_permutations(TUPLE_LENGTH)
    accuracies, start = [], time.time()
    for index in range(steps):
        ordered = temporal_tuples(videos, rng, BATCH)
        labels = rng.integers(len(permutations), size=BATCH)
        # Slot i holds the clip permutations[label][i], as the sampler's shuffle.
        shuffled = np.stack([tuple_[permutations[label]] for tuple_, label in zip(ordered, labels)])
        logs = step({"tuple": tf.constant(shuffled), "label": tf.constant(labels, tf.int32)})
        accuracies.append(float(logs["accuracy"]))
        if (index + 1) % 25 == 0:
            print(
                f"  steps {index - 23:3d}-{index + 1:3d}: order accuracy {np.mean(accuracies[-25:]):.3f} "
                f"(chance {1 / len(permutations):.3f}; {time.time() - start:.0f} s)", flush=True,
            )


def main(argv):
    del argv
    videos = render(FLAGS.cue_resolution)
    stationarity(videos, np.random.default_rng(0))
    print("VCOP on the videos as rendered:")
    train_order(videos, FLAGS.cue_steps)
    print("VCOP on the same videos, brightness ramped from 40% to 100% over each video:")
    train_order(videos * np.linspace(0.4, 1.0, videos.shape[1], dtype=np.float32)[None, :, None, None, None],
                FLAGS.cue_steps)


if __name__ == "__main__":
    app.run(main)
