"""Retrieval: R@k and nearest neighbours against a brute-force NumPy computation."""

import numpy as np
import pytest

from tfvssl.eval import retrieval


def brute_force_recall(queries, query_labels, gallery, gallery_labels, k):
    hits = 0
    for query, label in zip(queries, query_labels):
        cosine = [g @ query / (np.linalg.norm(g) * np.linalg.norm(query)) for g in gallery]
        nearest = sorted(range(len(gallery)), key=lambda i: -cosine[i])[:k]
        hits += any(gallery_labels[i] == label for i in nearest)
    return hits / len(queries)


def test_recall_at_k_matches_brute_force():
    rng = np.random.default_rng(0)
    gallery_labels = rng.integers(0, 6, size=60)
    centers = rng.normal(size=(6, 16))
    gallery = centers[gallery_labels] + 1.5 * rng.normal(size=(60, 16))
    query_labels = rng.integers(0, 6, size=25)
    queries = 3.0 * (centers[query_labels] + 1.5 * rng.normal(size=(25, 16)))  # Scale must not matter.
    recalls, neighbours, similarities = retrieval.retrieve(queries, query_labels, gallery, gallery_labels)
    for k in retrieval.KS:
        expected = brute_force_recall(queries, query_labels, gallery, gallery_labels, k)
        assert recalls[f"R@{k}"] == pytest.approx(expected)
    assert neighbours.shape == (25, 50)
    assert np.all(np.diff(similarities, axis=1) <= 1e-12)  # Most similar first.
    assert 0.0 < recalls["R@1"] < recalls["R@10"] < 1.0  # The case is neither trivial nor hopeless.


def test_a_video_feature_is_the_mean_of_its_clips():
    features = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 1.0], [5.0, 5.0], [1.0, 1.0]])
    videos, means = retrieval.mean_features(features, np.array([[4], [4], [1], [4], [1]]))
    np.testing.assert_array_equal(videos, [[1], [4]])
    np.testing.assert_allclose(means, [[0.5, 1.0], [3.0, 7 / 3]])


def test_at_clip_level_a_feature_is_the_mean_of_one_clips_crops():
    features = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 1.0], [5.0, 5.0]])
    keys = np.array([[4, 1], [4, 1], [4, 0], [2, 0]])  # (video, clip) of each view.
    ids, means = retrieval.mean_features(features, keys)
    np.testing.assert_array_equal(ids, [[2, 0], [4, 0], [4, 1]])
    np.testing.assert_allclose(means, [[5.0, 5.0], [0.0, 1.0], [2.0, 1.0]])
