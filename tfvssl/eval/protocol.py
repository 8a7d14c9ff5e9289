"""The test-time protocol shared by probes and fine-tuning: aggregation and metrics.

A video's views (temporal clips x spatial crops) are classified one by one; their scores
are averaged per clip (over its crops) and per video (over all its views):
- `softmax` (DPC, MemDPC, Pace): the mean of the views' softmax probabilities;
- `logits` (VCOP's test code): the softmax of the mean of the views' logits.
Clip-level metrics score each temporal clip, video-level metrics each video. The results
(a JSON-able dict) also hold the per-class accuracy, the confusion matrix and every video's
probabilities, so that two streams (RGB and flow) can be late-fused by averaging them.
"""

import json
import os

import numpy as np

AGGREGATES = ("softmax", "logits")


def softmax(logits):
    """Row-wise softmax of `[N, K]` logits (float64)."""
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def aggregate(logits, groups, mode="softmax"):
    """Averages view scores per group.

    Args:
      logits: `[V, K]` logits of V views.
      groups: `[V]` ints, the group (video, or clip) of each view.
      mode: "softmax" (mean of probabilities) or "logits" (softmax of the mean logits).

    Returns:
      `(group_ids, probabilities)`: the sorted distinct groups `[G]` and their `[G, K]`
      probabilities.
    """
    if mode not in AGGREGATES:
        raise ValueError(f"--aggregate={mode}: choose one of {AGGREGATES}")
    group_ids, positions = np.unique(groups, return_inverse=True)
    scores = softmax(logits) if mode == "softmax" else np.asarray(logits, np.float64)
    sums = np.zeros((len(group_ids), scores.shape[1]))
    np.add.at(sums, positions, scores)
    means = sums / np.bincount(positions)[:, None]
    return group_ids, (means if mode == "softmax" else softmax(means))


def top_k_accuracy(probabilities, labels, k):
    """Fraction of rows whose label is among the k highest scores (ties: lower index first)."""
    k = min(k, probabilities.shape[1])
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(ranked == np.asarray(labels)[:, None], axis=1)))


def confusion_matrix(labels, predictions, num_classes):
    """`[K, K]` counts; row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def video_metrics(probabilities, labels, class_names):
    """Top-1/top-5, per-class and mean class accuracy and the confusion matrix of videos.

    Args:
      probabilities: `[N, K]` per-video class probabilities.
      labels: `[N]` int labels.
      class_names: K names.

    Returns:
      A dict: `top1`, `top5`, `mean_class_accuracy` (over classes with test videos),
      `per_class_accuracy` (name -> accuracy, None for a class without test videos) and
      `confusion_matrix` (rows true, columns predicted).
    """
    labels = np.asarray(labels)
    predictions = np.argmax(probabilities, axis=1)
    matrix = confusion_matrix(labels, predictions, len(class_names))
    totals = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[c, c] / totals[c]) if totals[c] else None)
        for c, name in enumerate(class_names)
    }
    present = [value for value in per_class.values() if value is not None]
    return {
        "top1": top_k_accuracy(probabilities, labels, 1),
        "top5": top_k_accuracy(probabilities, labels, 5),
        "mean_class_accuracy": float(np.mean(present)) if present else None,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def evaluate(view_logits, videos, clips, labels, class_names, filenames, mode="softmax"):
    """Clip- and video-level results of the views of a test set.

    Args:
      view_logits: `[V, K]` logits of every view.
      videos: `[V]` int, each view's video (index into `filenames`).
      clips: `[V]` int, each view's temporal clip within its video.
      labels: `[V]` int, each view's label (its video's).
      class_names: K names.
      filenames: the test set's video names, by video index.
      mode: "softmax" or "logits" (see the module docstring).

    Returns:
      The results dict: `aggregate`, `num_videos`, `num_clips`, `num_views`, `clip_level`
      (`top1`, `top5`), `video_level` (`video_metrics`), `class_names` and `videos` (per
      video: `filename`, `label`, `prediction`, `probabilities`).
    """
    videos, clips, labels = (np.asarray(a, np.int64) for a in (videos, clips, labels))
    label_of = dict(zip(videos.tolist(), labels.tolist()))
    clip_keys = videos * (clips.max() + 1) + clips
    clip_ids, clip_probabilities = aggregate(view_logits, clip_keys, mode)
    clip_labels = np.array([label_of[key // (clips.max() + 1)] for key in clip_ids])
    video_ids, video_probabilities = aggregate(view_logits, videos, mode)
    video_labels = np.array([label_of[v] for v in video_ids])
    return {
        "aggregate": mode,
        "num_videos": len(video_ids),
        "num_clips": len(clip_ids),
        "num_views": len(view_logits),
        "clip_level": {
            "top1": top_k_accuracy(clip_probabilities, clip_labels, 1),
            "top5": top_k_accuracy(clip_probabilities, clip_labels, 5),
        },
        "video_level": video_metrics(video_probabilities, video_labels, class_names),
        "class_names": list(class_names),
        "videos": [
            {
                "filename": filenames[v],
                "label": int(label),
                "prediction": int(np.argmax(p)),
                "probabilities": [round(float(x), 6) for x in p],
            }
            for v, label, p in zip(video_ids, video_labels, video_probabilities)
        ],
    }


def fuse(results, other):
    """Late fusion of two streams: the mean of their per-video probabilities.

    Args:
      results, other: results dicts (`evaluate`) of the same test videos (matched by
        filename), e.g. an RGB and a flow model.

    Returns:
      A results dict with the fused `videos` and `video_level`, and `fused_with` holding
      both streams' video-level top-1 (clip-level metrics do not fuse and are dropped).
    """
    theirs = {video["filename"]: video for video in other["videos"]}
    missing = [v["filename"] for v in results["videos"] if v["filename"] not in theirs]
    if missing:
        raise ValueError(f"--fuse_with: {len(missing)} test videos are missing there, e.g. {missing[0]}")
    fused = [
        (video, (np.array(video["probabilities"]) + np.array(theirs[video["filename"]]["probabilities"])) / 2)
        for video in results["videos"]
    ]
    probabilities = np.stack([p for _, p in fused])
    labels = [video["label"] for video, _ in fused]
    return {
        **{k: v for k, v in results.items() if k not in ("clip_level", "video_level", "videos")},
        "fused_with": {"this": results["video_level"]["top1"], "other": other["video_level"]["top1"]},
        "video_level": video_metrics(probabilities, labels, results["class_names"]),
        "videos": [
            {**video, "prediction": int(np.argmax(p)), "probabilities": [round(float(x), 6) for x in p]}
            for video, p in fused
        ],
    }


def summary(results):
    """One line: video-level top-1/top-5 and mean class accuracy, clip-level top-1."""
    video = results["video_level"]
    line = f"video top-1 {video['top1']:.4f} top-5 {video['top5']:.4f}"
    if video["mean_class_accuracy"] is not None:
        line += f" mean-class {video['mean_class_accuracy']:.4f}"
    if "clip_level" in results:
        line += f" | clip top-1 {results['clip_level']['top1']:.4f}"
    return line + f" ({results['num_videos']} videos)"


def write_json(path, results):
    """Writes `results` as indented JSON (atomically)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)


def read_json(path):
    with open(path) as f:
        return json.load(f)
