"""Nearest-neighbour video retrieval with a frozen encoder (no labels seen in training).

Each test video queries the training videos (`--retrieval_level=video`): a video's feature is
the mean of its clips' features (one of the encoder's pooled outputs: `embedding`, `p4`/`p5`
or VCOP's `conv5_maxpool` for the 3-D CNNs); or each test clip queries the training clips
(`--retrieval_level=clip`, the VCOP and Pace papers), a clip's feature the mean of its
crops'. Neighbours are ranked by cosine similarity; a query is correct at k when any of its
k nearest training videos (clips) has its label (R@k, k = 1, 5, 10, 20, 50). The papers use
two conventions for the clips, both available through `inputs.Views`:
- VCOP / Pace: 10 uniformly spaced clips per video, centre crop (`--test_clips=uniform`);
- MemDPC: every sliding window of the clip's span (`--test_clips=windows`).
"""

import dataclasses
import os

import numpy as np
from absl import logging

from tfvssl import workdir
from tfvssl.eval import exporting, inputs, protocol

KS = (1, 5, 10, 20, 50)
RESULTS_FILE = "retrieval.json"
FEATURES_FILE = "retrieval_features.npz"


def mean_features(view_features, keys):
    """Mean feature of the views that share a key.

    Args:
      view_features: `[V, D]`.
      keys: `[V, K]` int, each view's key (its video, or its video and clip).

    Returns:
      `(ids [N, K], features [N, D])`, keys sorted.
    """
    ids, positions = np.unique(keys, axis=0, return_inverse=True)
    positions = positions.reshape(-1)
    sums = np.zeros((len(ids), view_features.shape[1]))
    np.add.at(sums, positions, view_features)
    return ids, sums / np.bincount(positions)[:, None]


def nearest_neighbours(queries, gallery, k):
    """The k gallery rows most cosine-similar to each query, most similar first.

    Args:
      queries: `[Q, D]`.
      gallery: `[G, D]`.
      k: neighbours per query (at most G).

    Returns:
      `(indices [Q, k] int, similarities [Q, k])`.
    """
    def unit(x):
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    similarity = unit(queries) @ unit(gallery).T
    k = min(k, similarity.shape[1])
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


def recall_at_k(neighbour_labels, query_labels, ks=KS):
    """R@k: the fraction of queries with their label among their first k neighbours.

    Args:
      neighbour_labels: `[Q, K]` labels of each query's neighbours, nearest first.
      query_labels: `[Q]`.
      ks: the k values (k above K counts all K neighbours).

    Returns:
      Dict `"R@k"` -> float.
    """
    hits = np.asarray(neighbour_labels) == np.asarray(query_labels)[:, None]
    return {f"R@{k}": float(np.mean(np.any(hits[:, :k], axis=1))) for k in ks}


def retrieve(query_features, query_labels, gallery_features, gallery_labels, ks=KS):
    """R@k of queries against a gallery, with the neighbours found.

    Returns:
      `(recalls, neighbours [Q, max(ks)], similarities [Q, max(ks)])`.
    """
    neighbours, similarities = nearest_neighbours(query_features, gallery_features, max(ks))
    recalls = recall_at_k(np.asarray(gallery_labels)[neighbours], query_labels, ks)
    return recalls, neighbours, similarities


class Retrieval:
    """The retrieval entry point's recipe: only the batch size of the feature extraction."""

    recipe = dict(batch_size=16)


def run(config):
    """Retrieval of the training videos by the test videos (`--retrieval_level=clip`: of the
    training clips by the test clips) with a frozen export.

    Writes `retrieval.json` (R@k and the settings) and `retrieval_features.npz` (the
    features of the videos or clips, their videos, labels and names, their clips at clip
    level, and each query's nearest neighbours, for `tfvssl.plots`) into
    `config.output_dir`; returns the JSON's path.
    """
    export_dir = workdir.find_export(config.encoder)
    method = workdir.load_method(export_dir)
    encoder = exporting.load_saved_model_layer(export_dir)
    outputs = exporting.read_info(export_dir)["outputs"]
    if config.feature not in outputs:
        raise ValueError(f"--feature={config.feature}: the export outputs {', '.join(outputs)}")
    data_root = config.data or method.config.data
    sets = {}
    for role, split in (
        ("gallery", inputs.labelled_split(data_root, config.split)),
        ("query", inputs.labelled_split(data_root, config.test_split)),
    ):
        views = inputs.run_views(
            lambda clips: encoder(clips)[config.feature],
            inputs.evaluation_dataset(split.files, method, config.views, config.batch_size),
        )
        keys = [views["video"], views["clip"]] if config.retrieval_level == "clip" else [views["video"]]
        ids, features = mean_features(views["outputs"], np.stack(keys, axis=1))
        videos = ids[:, 0]
        sets[role] = dict(
            videos=videos, features=features, labels=split.labels[videos], names=[split.names[v] for v in videos]
        )
        if config.retrieval_level == "clip":
            sets[role]["clips"] = ids[:, 1]
    recalls, neighbours, similarities = retrieve(
        sets["query"]["features"], sets["query"]["labels"], sets["gallery"]["features"], sets["gallery"]["labels"]
    )
    os.makedirs(config.output_dir, exist_ok=True)
    np.savez(
        os.path.join(config.output_dir, FEATURES_FILE),
        **{f"{role}_{name}": np.asarray(value) for role, values in sets.items() for name, value in values.items()},
        neighbours=neighbours, similarities=similarities,
    )
    results = {
        "recall": recalls,
        "feature": config.feature,
        "level": config.retrieval_level,
        "views": dataclasses.asdict(config.views),
        "num_queries": len(sets["query"]["videos"]),
        "num_gallery": len(sets["gallery"]["videos"]),
        "encoder": export_dir,
        "data": data_root,
        "split": config.split,
        "test_split": config.test_split,
        "class_names": inputs.class_names(data_root, sets["gallery"]["labels"]),
    }
    path = os.path.join(config.output_dir, RESULTS_FILE)
    protocol.write_json(path, results)
    logging.info("%s", " ".join(f"{name} {value:.4f}" for name, value in recalls.items()))
    return path
