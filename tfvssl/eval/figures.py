"""Pictures of a run and of its evaluations, as PNG files.

- Training curves from a `metrics.jsonl` (pretraining, probe or fine-tune), train and
  validation values of a metric in one panel.
- t-SNE of the test videos' features coloured by class (DPC figure 6).
- Histograms of the cosine similarity of same-class and different-class video pairs (DPC
  appendix C, figure 7).
- Retrieval grids: each query video and its three nearest training videos as frame strips.
- Confusion matrices of the classification results.
- Oops timelines: a video's clip probabilities (intentional, transitional, unintentional)
  against time and its annotated failure time.

`plot_directory(directory)` draws every picture the files under `directory` allow into
`<directory>/plots/`.
"""

import json
import os

import matplotlib

matplotlib.use("Agg")  # Files only; no display.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfvssl.eval import protocol, retrieval  # noqa: E402
from tfvssl.workdir import METRICS_FILE, PLOTS_DIR  # noqa: E402

# Keys of metrics.jsonl records that are not metrics.
_BOOKKEEPING = ("step", "time", "epoch")


def read_metrics(path):
    """The records of a `metrics.jsonl`, a list of dicts."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def training_curves(metrics, path, title=""):
    """One panel per metric, its `train/` and `val/` series together, against the step.

    Args:
      metrics: `read_metrics` records.
      path: the PNG to write.
      title: figure title.
    """
    series = {}
    for record in metrics:
        for key, value in record.items():
            if key in _BOOKKEEPING:
                continue
            split, _, name = key.rpartition("/")
            series.setdefault(name, {}).setdefault(split or name, []).append((record["step"], value))
    columns = min(3, len(series))
    rows = -(-len(series) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3 * rows), squeeze=False)
    for axis, (name, lines) in zip(axes.flat, sorted(series.items())):
        for label, points in sorted(lines.items()):
            steps, values = zip(*points)
            axis.plot(steps, values, marker="." if len(points) < 30 else None, label=label)
        axis.set_title(name)
        axis.set_xlabel("step")
        if len(lines) > 1:
            axis.legend()
    for axis in axes.flat[len(series):]:
        axis.axis("off")
    _save(figure, path, title)


def tsne(features, labels, class_names, path, seed=0, title=""):
    """2-D t-SNE of `[N, D]` features, one colour per class."""
    from sklearn.manifold import TSNE

    points = TSNE(
        n_components=2, perplexity=min(30.0, max(1.0, (len(features) - 1) / 3)), init="pca", random_state=seed
    ).fit_transform(np.asarray(features, np.float64))
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    colors = plt.get_cmap("tab20" if len(class_names) > 10 else "tab10")
    for index, name in enumerate(class_names):
        members = np.asarray(labels) == index
        if members.any():
            axis.scatter(*points[members].T, s=14, color=colors(index % colors.N), label=name)
    axis.legend(fontsize=7, markerscale=1.5, loc="best")
    axis.set_xticks([])
    axis.set_yticks([])
    _save(figure, path, title or "t-SNE of the test videos' features")


def pair_similarities(features, labels):
    """Cosine similarities of all video pairs, split by whether the classes agree.

    Returns:
      `(same_class [P1], different_class [P2])`.
    """
    unit = np.asarray(features, np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    first, second = np.triu_indices(len(unit), k=1)
    same = np.asarray(labels)[first] == np.asarray(labels)[second]
    pairs = similarity[first, second]
    return pairs[same], pairs[~same]


def similarity_histograms(features, labels, path, title=""):
    """Histograms of the cosine similarity of same-class and different-class pairs."""
    same, different = pair_similarities(features, labels)
    figure, axis = plt.subplots(figsize=(6, 4))
    bins = np.linspace(min(same.min(initial=1), different.min(initial=1)), 1.0, 40)
    axis.hist(different, bins=bins, density=True, alpha=0.6, label=f"different class ({len(different)} pairs)")
    axis.hist(same, bins=bins, density=True, alpha=0.6, label=f"same class ({len(same)} pairs)")
    axis.set_xlabel("cosine similarity")
    axis.set_ylabel("density")
    axis.legend()
    _save(figure, path, title or "cosine similarity of test video pairs")


def retrieval_grid(queries, neighbours, path, title=""):
    """Queries and their nearest neighbours as frame strips.

    Args:
      queries: list of `(frames uint8 [F, H, W, C], caption)`, one per row.
      neighbours: per query, a list of `(frames, caption, correct)`.
      path: the PNG to write.
    """
    columns = 1 + max(len(row) for row in neighbours)
    size = (3.2 * columns, 1.3 * len(queries) + 0.6)
    figure, axes = plt.subplots(len(queries), columns, figsize=size, squeeze=False)
    for row, ((frames, caption), found) in enumerate(zip(queries, neighbours)):
        cells = [(frames, f"query: {caption}", None)] + list(found)
        for axis, (strip, text, correct) in zip(axes[row], cells):
            axis.imshow(np.concatenate(list(strip), axis=1).squeeze())
            axis.set_title(text, fontsize=7, color={True: "green", False: "red", None: "black"}[correct])
            axis.set_xticks([])
            axis.set_yticks([])
    _save(figure, path, title or "nearest training videos of test videos")


def confusion_matrix(matrix, class_names, path, title=""):
    """The confusion matrix, rows normalised (true class), counts written in small ones."""
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    axis.set_yticks(ticks, class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        for (true, predicted), count in np.ndenumerate(matrix):
            if count:
                color = "white" if rates[true, predicted] > 0.5 else "black"
                axis.text(predicted, true, str(count), ha="center", va="center", fontsize=7, color=color)
    _save(figure, path, title or "confusion matrix (video level)")


def oops_timelines(videos, class_names, path, title=""):
    """One panel per video: its clips' class probabilities against time, the clips' true
    labels as a strip of coloured squares below, the annotated failure time dashed.

    Args:
      videos: dicts with `filename`, `t_fail` (seconds), `clip_start`, `clip_end` (`[K]`
        seconds), `labels` (`[K]`) and `probabilities` (`[K, 3]`), as `tfvssl.oops` writes
        them.
      class_names: the three class names.
      path: the PNG to write.
      title: figure title.
    """
    colors = ("tab:green", "tab:orange", "tab:red")
    figure, axes = plt.subplots(len(videos), 1, figsize=(8, 2.3 * len(videos)), squeeze=False)
    for axis, video in zip(axes[:, 0], videos):
        centers = (np.asarray(video["clip_start"]) + np.asarray(video["clip_end"])) / 2
        probabilities = np.asarray(video["probabilities"])
        for index, name in enumerate(class_names):
            axis.plot(centers, probabilities[:, index], color=colors[index], label=name)
        axis.scatter(centers, np.full(len(centers), -0.1), c=[colors[label] for label in video["labels"]],
                     marker="s", s=10, label="true label")
        axis.axvline(video["t_fail"], color="black", linestyle="--", label="failure time")
        axis.set_ylim(-0.18, 1.35)  # Room for the legend above the curves.
        axis.set_ylabel("probability")
        axis.set_title(video["filename"], fontsize=8)
    axes[-1, 0].set_xlabel("clip centre (s)")
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper left")
    _save(figure, path, title or "class probabilities over time")


def _save(figure, path, title):
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _retrieval_pictures(directory, out_prefix, num_queries=5, num_neighbours=3):
    """t-SNE, similarity histograms and the retrieval grid of one `tfvssl.retrieve` output."""
    from tfvssl.data import records
    from tfvssl.eval import inputs

    results = protocol.read_json(os.path.join(directory, retrieval.RESULTS_FILE))
    arrays = np.load(os.path.join(directory, retrieval.FEATURES_FILE))
    names = results["class_names"]
    tsne(arrays["query_features"], arrays["query_labels"], names, out_prefix + "tsne.png")
    similarity_histograms(arrays["query_features"], arrays["query_labels"], out_prefix + "similarity.png")
    # The first queries of distinct classes, with frames read back from the records.
    first_of_class = {}
    for row, label in enumerate(arrays["query_labels"]):
        first_of_class.setdefault(int(label), row)
    rows = sorted(first_of_class.values())[:num_queries]
    neighbours = arrays["neighbours"][rows, :num_neighbours]
    query_frames = inputs.read_frames(
        records.list_shards(results["data"], results["test_split"]), arrays["query_videos"][rows]
    )
    gallery_frames = inputs.read_frames(
        records.list_shards(results["data"], results["split"]), arrays["gallery_videos"][neighbours.ravel()]
    )
    queries, found = [], []
    for row, row_neighbours in zip(rows, neighbours):
        label = int(arrays["query_labels"][row])
        queries.append((query_frames[int(arrays["query_videos"][row])], names[label]))
        found.append([
            (
                gallery_frames[int(arrays["gallery_videos"][n])],
                names[int(arrays["gallery_labels"][n])],
                int(arrays["gallery_labels"][n]) == label,
            )
            for n in row_neighbours
        ])
    retrieval_grid(queries, found, out_prefix + "retrieval_grid.png")


def plot_directory(directory):
    """Draws every picture the files under `directory` allow into `<directory>/plots/`.

    A `metrics.jsonl` gives training curves, a `results.json` (probe, fine-tune) its
    confusion matrix, a `retrieval_features.npz` the t-SNE, the similarity histograms and
    the retrieval grid. Pictures of a sub-directory are prefixed with its path.

    Returns:
      The PNG paths written.
    """
    plots_dir = os.path.join(directory, PLOTS_DIR)
    written = []
    for root, _, files in sorted(os.walk(directory)):
        if os.path.abspath(root).startswith(os.path.abspath(plots_dir)):
            continue
        relative = os.path.relpath(root, directory)
        prefix = os.path.join(plots_dir, "" if relative == "." else relative.replace(os.sep, "_") + "_")
        if METRICS_FILE in files:
            metrics = read_metrics(os.path.join(root, METRICS_FILE))
            if metrics:
                training_curves(metrics, prefix + "training_curves.png", title=relative if relative != "." else "")
                written.append(prefix + "training_curves.png")
        if "results.json" in files:
            results = protocol.read_json(os.path.join(root, "results.json"))
            matrix = results["video_level"]["confusion_matrix"]
            confusion_matrix(matrix, results["class_names"], prefix + "confusion_matrix.png")
            written.append(prefix + "confusion_matrix.png")
        if retrieval.FEATURES_FILE in files and retrieval.RESULTS_FILE in files:
            _retrieval_pictures(root, prefix)
            written += [prefix + name for name in ("tsne.png", "similarity.png", "retrieval_grid.png")]
    return written
