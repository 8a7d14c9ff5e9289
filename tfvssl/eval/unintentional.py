"""Unintentional action classification on Oops (Epstein et al. 2020; MemDPC §5.7, appendix B).

Every clip of a video (1 s, one every 0.25 s; labels, validity filter and oversampling as the
Oops authors: `tfvssl.data.oops_labels`) is classified as intentional, transitional or
unintentional, by one of two classifiers:

- `PredictiveClassifier` (`--classifier=predictive`, MemDPC appendix B): the input is a
  window of S consecutive 1-s clips x_1..x_S, each one block of the MemDPC encoder. At each
  step t the model gives the clip's feature z_t (f's map, before the ReLU: the space its
  predictions live in) and the feature z^_t predicted from x_1..x_{t-1} alone (the forward
  GRU's state after the previous steps addresses the memory; at t = 1 the zero state does).
  Their spatial means are concatenated, [z_t, z^_t], and a linear classifier xi gives the
  step's three logits: a failure is a moment whose prediction misses. It needs the
  pretraining workdir: the memory and the predictor are not exported.
- `EmbeddingClassifier` (`--classifier=embedding`): the linear classifier on the exported
  embedding of one clip, for any method's encoder.

Frozen (the default, the paper's "Freeze" column): the encoder (and the GRU and memory) run
in inference, BatchNorm on moving statistics, and only xi trains, on features computed once
(`--train_features=cached`: each clip's test transform) or on augmented clips
(`augmented`). `--finetune` trains everything on augmented clips. The augmentation is the
method's classifier training transform (`Method.downstream_clip`; MemDPC: a random sized
crop, flip and colour jitter), one draw per window, as the authors' clip-consistent crops.

Training windows: each epoch, every video gives the windows of its `oops_labels.training_windows`
(at most 10 clips drawn from its oversampled clip list, each at a random step of its
window). The loss is on the drawn clips' steps, which follow the authors' class ratios, as
the appendix's oversampling intends (`--window_loss=every_step` trains on every step of a
window, the others following their video's transitional-poor mix; steps outside the video
never carry a loss). Each step's frames are the encoder's pretraining sampling of the
clip: its block length at its frame stride (`oops_labels.step_frames`). Test: every clip of every
valid test video; a window starts at every clip and each clip's probabilities are the mean
softmax over the window steps that hold it (the paper's "temporal moving window", then
"summarize the prediction"). The windows start in the video (the authors' protocol), so a
clip's step says it lies at least that many seconds in; with `--pad_windows` they may start
up to S - 1 steps before it, padded with the video's first clip, so that every clip is
seen at every step (in training, the drawn clip at a uniform step). Reported: clip-level
accuracy, per class and overall, the confusion matrix (`protocol.video_metrics` on clips),
and timelines of a few videos.
"""

import dataclasses
import functools
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvssl.data import oops_labels, pipeline, records
from tfvssl import workdir
from tfvssl.eval import classify, exporting, figures, inputs, protocol
from tfvssl.train import checkpoint, optim

RESULTS_FILE = "oops_results.json"
AUTOTUNE = tf.data.AUTOTUNE


class Recipe:
    """MemDPC appendix B: cross-entropy, Adam at 1e-3 decayed once to 1e-4 (the paper: when
    the validation loss plateaus; here at a fixed epoch, 60 of 100), a linear classifier
    (BatchNorm -> dropout 0.5 -> linear, as MemDPC's linear probe); 100 epochs and batches of
    32 as the Oops authors' code."""

    recipe = dict(
        optimizer="adam", lr=1e-3, weight_decay=0.0, head_dropout=0.5, epochs=100,
        lr_decay_epochs=[60], lr_decay_factor=0.1, batch_size=32,
    )


# Bins of relative time of the content-free baseline (`time_prior_predictions`): 1 s clips every
# 0.25 s of 3.2-30 s videos give 10-117 clips a video.
TIME_PRIOR_BINS = 10

# ---- Videos ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Videos:
    """The videos of a split that the Oops protocol uses, in record order.

    Attributes:
      files: the split's shard paths.
      positions: int64 `[V]` record positions of the used videos in `files`.
      names: their filenames.
      t_fail: float `[V]` failure times in seconds.
      labels: per video, int32 `[K]` clip labels.
      starts, ends: per video, float `[K]` clip start and end times.
    """

    files: list
    positions: np.ndarray
    names: list
    t_fail: np.ndarray
    labels: list
    starts: list
    ends: list


@tf.function
def _labelled_clips(num_frames, fps, t_fail):
    """`(labels, starts, ends)` of a video's clips (`oops_labels.clip_grid`, `oops_labels.clip_labels`)."""
    grid = oops_labels.clip_grid(num_frames, fps)
    return oops_labels.clip_labels(grid["start"], grid["end"], t_fail), grid["start"], grid["end"]


def annotation_key(filename):
    """The `transition_times.json` / `borders.json` key of a record's filename."""
    return os.path.splitext(os.path.basename(filename))[0]


def read_videos(data_root, split, annotations=None):
    """The videos of `split` with a failure time that pass the authors' validity filter.

    Args:
      data_root: `--data`.
      split: split name.
      annotations: optional `transition_times.json` contents: the filter is then the
        authors' exactly (`oops_labels.annotation_is_valid`, videos without an entry dropped);
        without it, the same thresholds on the record's `t_fail`, `rel_t` and duration.

    Raises:
      ValueError: naming `--data` when no video is left.
    """
    files = records.list_shards(data_root, split)
    kept = {"positions": [], "names": [], "t_fail": [], "labels": [], "starts": [], "ends": []}
    for position, record in enumerate(tf.data.TFRecordDataset(files)):
        video = records.parse_sequence_example(record)
        name = video["filename"].numpy().decode()
        if annotations is not None:
            annotation = annotations.get(annotation_key(name))
            valid = annotation is not None and oops_labels.annotation_is_valid(annotation)
        else:
            valid = bool(oops_labels.is_valid(
                float(video["t_fail"]), float(video["rel_t"]), int(video["num_frames"]) / float(video["fps"])
            ))
        # The labels as the input pipelines compute them, from the record's float32 values.
        labels, starts, ends = _labelled_clips(video["num_frames"], video["fps"], video["t_fail"])
        if not valid or labels.shape[0] == 0:  # Filtered out, or shorter than one clip.
            continue
        for key, value in (("positions", position), ("names", name), ("t_fail", float(video["t_fail"])),
                           ("labels", labels.numpy()), ("starts", starts.numpy()), ("ends", ends.numpy())):
            kept[key].append(value)
    if not kept["names"]:
        raise ValueError(
            f"--data={data_root}: no video of the {split!r} split has a failure time that passes the Oops "
            "filter (oops/t_fail >= 0, rel_t in [0.01, 0.99], 3.2-30 s); prepare Oops with "
            "`tfvssl.prepare --dataset=oops` or pretrain on the embedded data with --synthetic_oops"
        )
    logging.info("%s: %d of %d videos pass the Oops filter", split, len(kept["names"]), position + 1)
    return Videos(
        files=files, positions=np.array(kept["positions"], np.int64), names=kept["names"],
        t_fail=np.array(kept["t_fail"]), labels=kept["labels"], starts=kept["starts"], ends=kept["ends"],
    )


def borders_lookup(path):
    """`filename -> (left, right)` letterbox borders from the authors' `borders.json`
    (name -> [left, right] fractions of the width); (0, 0), no trimming, for other videos or
    without `path`."""
    if not path:
        return lambda filename: (0.0, 0.0)
    with open(path) as f:
        borders = json.load(f)
    keys = tf.constant(list(borders), tf.string)
    tables = [
        tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, list(values)), default_value=0.0)
        for values in zip(*[(float(left), float(right)) for left, right in borders.values()])
    ]

    def lookup(filename):
        key = tf.strings.regex_replace(filename, r"^.*/|\.[^./]*$", "")
        return tables[0].lookup(key), tables[1].lookup(key)

    return lookup


# ---- Classifiers -------------------------------------------------------------------------------------


def _merge_steps(x):
    """`[B, S, ...]` -> `[B * S, ...]`."""
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


class OopsClassifier(classify.Classifier):
    """Windows of clips -> logits per step.

    Input: float32 windows of clips `[B, S, T, H, W, C]`, or of their `clip_features`.
    Output: logits `[B, S, 3]`. Subclasses define `clip_features` and `step_features`.

    Args:
      encoder: the model the clip features come from.
      head: xi, `[N, D'] -> [N, 3]` logits (`classify.build_head`).
      frozen: the encoder runs in inference and does not train.
      weight_decay: coupled L2 (`classify.Classifier`).
    """

    def __init__(self, encoder, head, frozen, weight_decay=0.0, **kwargs):
        super().__init__(encoder, head, weight_decay=weight_decay, **kwargs)
        self.frozen = frozen
        if frozen:
            encoder.trainable = False

    def build(self, input_shape):
        self.built = True  # The encoder comes built; the head builds on its first call.

    def clip_features(self, clips, training=False):
        """`[N, T, H, W, C]` clips -> `[N, ...]` per-clip features."""
        raise NotImplementedError

    def step_features(self, features, training=False):
        """`[B, S, ...]` windows of clip features -> `[B, S, D']` what xi reads."""
        raise NotImplementedError

    def call(self, inputs, training=None):
        encoder_training = bool(training) and not self.frozen
        if inputs.shape.rank == 6:  # Clips: encode them, all steps at once.
            features = self.clip_features(_merge_steps(inputs), encoder_training)
            inputs = tf.reshape(features, tf.concat([tf.shape(inputs)[:2], tf.shape(features)[1:]], 0))
        steps = self.step_features(inputs, encoder_training)
        logits = self.head(_merge_steps(steps), training=training)
        return tf.reshape(logits, tf.concat([tf.shape(steps)[:2], [-1]], 0))


class EmbeddingClassifier(OopsClassifier):
    """xi on the encoder's embedding of each clip (its windows have one step)."""

    def clip_features(self, clips, training=False):
        return self.encoder(clips, training=training)["embedding"]

    def step_features(self, features, training=False):
        return features


class PredictiveClassifier(OopsClassifier):
    """MemDPC appendix B: xi on [z_t, z^_t], z^_t read from the memory by the forward GRU's
    state after steps 1..t-1. `encoder` is the `MemoryAugmentedDPC` pretext model."""

    def __init__(self, encoder, head, frozen, weight_decay=0.0, **kwargs):
        super().__init__(encoder, head, frozen, weight_decay, **kwargs)
        if encoder.encoder.backward_aggregator is not None:
            # Single-directional, as the appendix: the backward GRU is unused.
            encoder.encoder.backward_aggregator.trainable = False

    def clip_features(self, clips, training=False):
        """`[N, L, H, W, C]` blocks -> f's maps `[N, h, w, D]`, before the ReLU."""
        return self.encoder.encoder.block_features(clips[:, tf.newaxis], training=training)[:, 0]

    def step_features(self, features, training=False):
        """`[B, S, h, w, D]` maps -> `[B, S, 2D]`: spatial means of z_t and of z^_t."""
        states, _ = self.encoder.encoder.aggregator(tf.nn.relu(features), training=training)
        before = tf.concat([tf.zeros_like(states[:, :1]), states[:, :-1]], axis=1)  # The state before step t.
        predicted = tf.reshape(self.encoder.read_memory(_merge_steps(before)), tf.shape(before))
        return tf.concat([tf.reduce_mean(features, axis=[2, 3]), tf.reduce_mean(predicted, axis=[2, 3])], -1)


def _pretraining_checkpoint(path):
    """`(workdir, checkpoint)` of the MemDPC pretraining run `--encoder` names: a workdir and its
    ckpt/ directory (its newest checkpoint is read), or the workdir an export records and the
    checkpoint it was exported from (an older one with `tfvssl.export --checkpoint`)."""
    if workdir.is_workdir(path):
        return path, os.path.join(path, workdir.CKPT_DIR)
    if os.path.isfile(os.path.join(path, exporting.INFO_FILE)):
        info = exporting.read_info(path)
        recorded = info.get("workdir")
        if recorded and workdir.is_workdir(recorded):
            if not info.get("checkpoint"):
                raise ValueError(
                    f"--encoder={path}: an untrained export; for the randomly initialised baseline pass "
                    f"--random_init with --encoder={recorded}"
                )
            return recorded, info["checkpoint"]
    raise ValueError(
        f"--encoder={path}: --classifier=predictive needs the MemDPC pretraining workdir (its memory and "
        "predictor are not exported); give the workdir, or use --classifier=embedding"
    )


def method_and_source(config):
    """The `Method` of `--encoder` and what its classifier is built from, without TF work.

    Returns:
      `(method, source)`: source is the pretraining checkpoint (predictive: a prefix, or a
      directory whose newest is read), else `--encoder`.

    Raises:
      ValueError: naming the flag that does not fit.
    """
    for flag in ("oops_annotations", "oops_borders"):
        if getattr(config, flag) and not os.path.isfile(getattr(config, flag)):
            raise ValueError(f"--{flag}={getattr(config, flag)}: no such file")
    if config.finetune and config.train_features == "cached":
        raise ValueError("--train_features=cached: the features of a fine-tuned encoder change; drop one")
    if config.classifier == "predictive":
        run, source = _pretraining_checkpoint(config.encoder)
        method = workdir.load_method(run)
        if method.name != "memdpc":
            raise ValueError(
                f"--classifier=predictive: {run} pretrained {method.name}, not memdpc; use "
                "--classifier=embedding"
            )
        return method, source
    path = config.encoder if workdir.is_workdir(config.encoder) else workdir.find_export(config.encoder)
    return workdir.load_method(path), config.encoder


def build_classifier(config, method, source):
    """The classifier of `config` with its encoder restored (or randomly initialised).

    Returns:
      `(classifier, frames_per_step, loaded)`: `loaded` names the checkpoint or export read,
      "random initialisation" with `--random_init`; the frames are taken at the method's
      `clip_frame_stride()`.
    """
    frozen = not config.finetune
    head = classify.build_head(config.head, len(oops_labels.CLASS_NAMES), config.head_dropout, config.head_hidden)
    weight_decay = optim.coupled_weight_decay(config)
    if config.classifier == "predictive":
        keras.utils.set_random_seed(method.config.seed)
        model = method.build_model()
        workdir.use_running_statistics(model)
        loaded = "random initialisation"
        if not config.random_init:
            loaded = checkpoint.load_weights(model, source)
        classifier = PredictiveClassifier(model, head, frozen, weight_decay)
        return classifier, method.config.block_length, loaded
    if config.random_init:
        encoder, _ = workdir.restore_encoder(method, None)
        encoder, loaded = exporting.keras_encoder(method, encoder), "random initialisation"
    else:
        _, encoder, loaded = workdir.open_encoder(source, frozen)
    return EmbeddingClassifier(encoder, head, frozen, weight_decay), method.clip_shape()[0], loaded


# ---- Inputs -------------------------------------------------------------------------------------------


def _video_clips(video, method, frames_per_step, borders):
    """Shared by both inputs: a parsed record's clip frame indices `[K, T]` (at the method's
    pretraining stride), its clip labels `[K]` and its letterbox borders."""
    grid = oops_labels.clip_grid(video["num_frames"], video["fps"])
    labels = oops_labels.clip_labels(grid["start"], grid["end"], video["t_fail"])
    frames = oops_labels.step_frames(grid["frames"], frames_per_step, method.clip_frame_stride(), video["num_frames"])
    return frames, labels, borders(video["filename"])


def clip_dataset(videos, method, frames_per_step, batch_size, borders):
    """Every clip of `videos`, with the method's test transform.

    Returns:
      A `tf.data.Dataset` of dicts: `clips` float32 `[B, T, *clip_shape[1:]]`, `video`
      (index into `videos`), `clip` (index in the video) and `label`, int `[B]` each.
    """
    modality = method.modalities[0]

    def video_clips(index, record):
        video = records.parse_sequence_example(record, method.modalities)
        indices, labels, (left, right) = _video_clips(video, method, frames_per_step, borders)

        def one_clip(clip, clip_indices):
            frames = pipeline.decode_frames(video[modality], clip_indices, modality)
            frames = oops_labels.trim_borders(frames, left, right)
            return {"clips": method.eval_clip(frames), "video": index, "clip": clip, "label": labels[clip]}

        return tf.data.Dataset.from_tensor_slices((tf.range(tf.shape(indices)[0]), indices)).map(one_clip)

    dataset = inputs.indexed_records(videos.files, videos.positions).map(lambda position, record: record)
    dataset = dataset.enumerate().interleave(video_clips, cycle_length=4, num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size).prefetch(AUTOTUNE)


def _as_examples(inputs, labels):
    """`(inputs, labels clipped to >= 0, weights 0 where there is no label)` for `fit`."""
    return inputs, tf.maximum(labels, 0), tf.cast(labels >= 0, tf.float32)


def _window_seeds(seed, offset, num_videos):
    """`(pool_seed, epoch_seed)` of the element at `offset` of the repeated training videos:
    its video's for the whole training (`oops_labels.training_clips`) and its epoch's."""
    video, epoch = offset % num_videos, offset // num_videos
    return pipeline.element_seed(seed, 0, video), pipeline.element_seed(seed, epoch + 1, video)


def _training_windows(labels, num_steps, pool_seed, seed, config):
    """`oops_labels.training_windows` with `--clips_per_video`, `--window_loss` and `--pad_windows`."""
    every_step = config.window_loss == "every_step"
    return oops_labels.training_windows(
        labels, num_steps, pool_seed, seed, config.clips_per_video, every_step, config.pad_windows
    )


def augmented_windows(videos, method, frames_per_step, num_steps, config, borders):
    """Endless shuffled batches of augmented training windows.

    Returns:
      A `tf.data.Dataset` of `(clips float32 [B, S, T, *clip_shape[1:]], labels [B, S],
      weights [B, S])`.
    """
    modality = method.modalities[0]

    def video_windows(offset, record):
        video = records.parse_sequence_example(record, method.modalities)
        indices, labels, (left, right) = _video_clips(video, method, frames_per_step, borders)
        pool_seed, epoch_seed = _window_seeds(config.seed, offset, len(videos.names))
        seed, clip_seed = tf.unstack(tf.random.experimental.stateless_split(epoch_seed, 2))
        clips, window_labels = _training_windows(labels, num_steps, pool_seed, seed, config)
        # Steps outside the video show its first clip (the padding); they carry no label.
        frame_indices = tf.gather(indices, tf.maximum(clips, 0))

        def one_window(window, frame_indices, window_labels):
            frames = pipeline.decode_frames(video[modality], tf.reshape(frame_indices, [-1]), modality)
            frames = oops_labels.trim_borders(frames, left, right)
            fold_in = tf.random.experimental.stateless_fold_in
            clip = method.downstream_clip(frames, fold_in(clip_seed, window))
            shape = tf.concat([[num_steps, frames_per_step], tf.shape(clip)[1:]], 0)
            return tf.reshape(clip, shape), window_labels

        numbers = tf.range(tf.shape(clips)[0])
        return tf.data.Dataset.from_tensor_slices((numbers, frame_indices, window_labels)).map(one_window)

    dataset = inputs.indexed_records(videos.files, videos.positions).map(lambda position, record: record)
    dataset = dataset.repeat().enumerate()
    dataset = dataset.interleave(video_windows, cycle_length=4, num_parallel_calls=AUTOTUNE)
    dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed).map(_as_examples)
    return dataset.batch(config.batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def cached_windows(videos, features, num_steps, config):
    """Endless shuffled batches of training windows of precomputed clip features.

    Args:
      videos: the training `Videos`.
      features: per video, float32 `[K, ...]` clip features.

    Returns:
      A `tf.data.Dataset` of `(features [B, S, ...], labels [B, S], weights [B, S])`.
    """
    def generate():
        yield from zip(features, videos.labels)

    signature = (
        tf.TensorSpec([None, *features[0].shape[1:]], tf.float32), tf.TensorSpec([None], tf.int32),
    )

    def video_windows(offset, element):
        video_features, labels = element
        pool_seed, seed = _window_seeds(config.seed, offset, len(videos.names))
        clips, window_labels = _training_windows(labels, num_steps, pool_seed, seed, config)
        window_features = tf.gather(video_features, tf.maximum(clips, 0))  # Outside: the first clip.
        return tf.data.Dataset.from_tensor_slices((window_features, window_labels))

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.repeat().enumerate().flat_map(video_windows)
    dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed).map(_as_examples)
    return dataset.batch(config.batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def windows_per_epoch(videos, clips_per_video):
    """Training windows an epoch holds: per video, min(clips_per_video, oversampled clips)."""
    total = 0
    for labels in videos.labels:
        pool = int(np.sum(oops_labels.oversampled_counts(np.bincount(labels, minlength=3))))
        total += min(clips_per_video, pool)
    return total


def compute_clip_features(classifier, videos, method, frames_per_step, batch_size, borders):
    """Per video, float32 `[K, ...]` features of its clips, in clip order."""
    views = inputs.run_views(
        lambda clips: classifier.clip_features(clips, training=False),
        clip_dataset(videos, method, frames_per_step, batch_size, borders),
    )
    order = np.lexsort((views["clip"], views["video"]))
    outputs, owners = views["outputs"][order], views["video"][order]
    return [outputs[owners == index] for index in range(len(videos.names))]


# ---- Evaluation -----------------------------------------------------------------------------------------


def clip_probabilities(classifier, features, num_steps, padded=False):
    """Each clip's probabilities: the mean softmax over the steps of the windows holding it,
    a window starting at every clip (`padded`: and before the first,
    `oops_labels.evaluation_window_starts`); steps outside the video show its first clip.

    Args:
      features: per video, `[K, ...]` clip features.
      padded: `--pad_windows`.

    Returns:
      Per video, float `[K, 3]`.
    """
    step_logits = tf.function(lambda windows: classifier(windows, training=False), reduce_retracing=True)
    probabilities = []
    for video_features in features:
        num_clips = len(video_features)
        starts = oops_labels.evaluation_window_starts(num_clips, num_steps, padded)
        clips = oops_labels.window_clips(starts, num_clips, num_steps).numpy()  # [W, S]
        logits = step_logits(tf.gather(video_features, np.maximum(clips, 0))).numpy()
        valid = clips >= 0
        _, means = protocol.aggregate(logits[valid], clips[valid], "softmax")
        probabilities.append(means)
    return probabilities


def time_prior_predictions(train_videos, test_videos, num_bins=TIME_PRIOR_BINS):
    """The labels of a classifier that sees only when a clip is, not what it shows.

    Each test clip gets the commonest training label of the clips in the same bin of
    relative time (clip start / the last clip's end, `num_bins` bins), or the commonest label
    overall where that bin holds no training clip. Failures come after the video's start, so
    time alone beats the majority class; a classifier should beat this to show it sees them.

    Returns:
      int `[C]`, the label of every test clip, videos in order.
    """

    def bins_of(videos):
        relative = [start / end[-1] for start, end in zip(videos.starts, videos.ends)]
        return np.minimum((np.concatenate(relative) * num_bins).astype(int), num_bins - 1)

    train_labels = np.concatenate(train_videos.labels)
    counts = np.zeros([num_bins, 3], np.int64)
    np.add.at(counts, (bins_of(train_videos), train_labels), 1)
    prior = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), np.bincount(train_labels, minlength=3).argmax())
    return prior[bins_of(test_videos)]


def evaluate(videos, probabilities, time_prior):
    """Clip-level results: accuracy overall and per class, mean class accuracy, confusion
    matrix (rows true), the majority-class accuracy (the chance level), the accuracy of the
    time prior overall, mean over the classes and per class (`time_prior`: its
    `time_prior_predictions`), and per video the clips' times, labels and probabilities."""
    labels = np.concatenate(videos.labels)
    names = list(oops_labels.CLASS_NAMES)
    metrics = protocol.video_metrics(np.concatenate(probabilities), labels, names)
    prior = protocol.video_metrics(np.eye(3)[time_prior], labels, names)
    return {
        "class_names": names,
        "num_videos": len(videos.names),
        "num_clips": len(labels),
        "clip_level": {
            "accuracy": metrics["top1"],
            "mean_class_accuracy": metrics["mean_class_accuracy"],
            "per_class_accuracy": metrics["per_class_accuracy"],
            "confusion_matrix": metrics["confusion_matrix"],
            "majority_class_accuracy": float(np.bincount(labels, minlength=3).max() / len(labels)),
            "time_prior_accuracy": prior["top1"],
            "time_prior_mean_class_accuracy": prior["mean_class_accuracy"],
            "time_prior_per_class_accuracy": prior["per_class_accuracy"],
        },
        "videos": [
            {
                "filename": name, "t_fail": float(t_fail),
                "clip_start": np.round(start, 4).tolist(), "clip_end": np.round(end, 4).tolist(),
                "labels": label.tolist(), "probabilities": np.round(p, 5).tolist(),
            }
            for name, t_fail, start, end, label, p in zip(
                videos.names, videos.t_fail, videos.starts, videos.ends, videos.labels, probabilities
            )
        ],
    }


def summary(results):
    """One line: clip accuracy overall and per class."""
    level = results["clip_level"]
    per_class = " ".join(
        f"{name} {value:.4f}" for name, value in level["per_class_accuracy"].items() if value is not None
    )
    return (
        f"clip accuracy {level['accuracy']:.4f} (mean class {level['mean_class_accuracy']:.4f}; {per_class}; "
        f"majority class {level['majority_class_accuracy']:.4f}, time prior {level['time_prior_accuracy']:.4f}, "
        f"mean class {level['time_prior_mean_class_accuracy']:.4f}) "
        f"on {results['num_clips']} clips of "
        f"{results['num_videos']} videos"
    )


def run(config):
    """Trains and evaluates the Oops classifier of `config`; returns its results path."""
    method, source = method_and_source(config)
    annotations = None
    if config.oops_annotations:
        with open(config.oops_annotations) as f:
            annotations = json.load(f)
    os.makedirs(config.output_dir, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    classifier, frames_per_step, loaded = build_classifier(config, method, source)
    num_steps = config.num_steps if config.classifier == "predictive" else 1
    borders = borders_lookup(config.oops_borders)
    data_root = config.data or method.config.data
    train_videos = read_videos(data_root, config.split, annotations)
    test_videos = read_videos(data_root, config.test_split, annotations)
    logging.info(
        "oops: %s classifier (%s) on %s from %s; %d training and %d test videos",
        config.classifier, "fine-tuned" if config.finetune else "frozen", method.name, loaded,
        len(train_videos.names), len(test_videos.names),
    )

    steps_per_epoch = max(1, windows_per_epoch(train_videos, config.clips_per_video) // config.batch_size)
    features_of = functools.partial(
        compute_clip_features, classifier, method=method, frames_per_step=frames_per_step,
        batch_size=config.batch_size, borders=borders,
    )
    if config.train_features == "cached":
        dataset = cached_windows(train_videos, features_of(train_videos), num_steps, config)
    else:
        dataset = augmented_windows(train_videos, method, frames_per_step, num_steps, config, borders)
    classify.train(classifier, dataset, config, steps_per_epoch, config.output_dir)

    test_features = features_of(test_videos)
    probabilities = clip_probabilities(classifier, test_features, num_steps, config.pad_windows)
    results = evaluate(test_videos, probabilities, time_prior_predictions(train_videos, test_videos))
    results.update(
        classifier=config.classifier, mode="finetune" if config.finetune else "frozen",
        encoder=config.encoder, loaded=loaded, method=method.name, num_steps=num_steps,
        pad_windows=config.pad_windows,
        train_features=config.train_features, epochs=config.epochs, data=data_root, split=config.split,
        test_split=config.test_split, train_videos=len(train_videos.names),
        filter="annotations" if annotations else "records",
    )
    path = os.path.join(config.output_dir, RESULTS_FILE)
    protocol.write_json(path, results)
    plots_dir = os.path.join(config.output_dir, workdir.PLOTS_DIR)
    figures.confusion_matrix(
        results["clip_level"]["confusion_matrix"], results["class_names"],
        os.path.join(plots_dir, "confusion_matrix.png"), title="confusion matrix (clips)",
    )
    timelines = results["videos"][: config.num_timelines]
    figures.oops_timelines(timelines, results["class_names"], os.path.join(plots_dir, "timeline.png"))
    logging.info("%s", summary(results))
    return path
