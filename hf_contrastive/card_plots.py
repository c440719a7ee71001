"""Images for the model card: kNN accuracy over training and a t-SNE map of test-set embeddings.

Both functions write a PNG and return its path; ``templates/model_card.md`` shows ``knn_history.png`` and
``embedding_tsne.png`` (the :data:`KNN_PLOT_FILE` / :data:`EMBEDDING_PLOT_FILE` names) when it is rendered with
``knn_plot`` / ``embedding_plot`` set. They use matplotlib's object-oriented API on an Agg canvas (no pyplot, no
display, no global backend change) and scikit-learn's t-SNE; both libraries are imported only when a plot is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

KNN_PLOT_FILE = "knn_history.png"
EMBEDDING_PLOT_FILE = "embedding_tsne.png"


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("Model card plots need matplotlib: pip install matplotlib") from error
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_knn_history(
    knn_history: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    title: str = "kNN top-1 during training",
    subtitle: str | None = None,
) -> Path:
    """Line plot of kNN top-1 (%) against the epoch.

    Args:
        knn_history: the trainer's ``knn_history`` entries, ``{"epoch": float, "knn_top1": float in [0, 1], ...}``.
        path: the PNG to write (parent folders are created).
    """
    points = sorted((float(entry["epoch"]), 100.0 * float(entry["knn_top1"])) for entry in knn_history
                    if entry.get("knn_top1") is not None)
    if not points:
        raise ValueError("knn_history holds no kNN measurement to plot.")
    epochs, accuracies = zip(*points, strict=True)
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    axes.plot(epochs, accuracies, marker="o", markersize=4, linewidth=1.8, color="tab:blue")
    best = int(np.argmax(accuracies))
    align = "center" if len(epochs) == 1 or 0 < best < len(epochs) - 1 else ("left" if best == 0 else "right")
    axes.annotate(f"best {accuracies[best]:.2f}% (epoch {epochs[best]:g})", (epochs[best], accuracies[best]),
                  textcoords="offset points", xytext=(0, 8), ha=align, fontsize=9)
    axes.set_xlabel("epoch")
    axes.set_ylabel("kNN top-1 accuracy (%)")
    axes.set_title(title if not subtitle else f"{title}\n({subtitle})", fontsize=11)
    low, high = min(accuracies), max(accuracies)
    margin = max(2.0, 0.15 * (high - low))
    axes.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    if len(epochs) == 1:
        axes.set_xlim(epochs[0] - 1, epochs[0] + 1)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def plot_embedding_map(
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str] | None,
    path: str | Path,
    max_points: int = 2000,
    seed: int = 0,
    *,
    normalize: bool = True,
    title: str = "t-SNE of test-set embeddings",
) -> Path:
    """2-D t-SNE map (scikit-learn, ``init="pca"``, ``learning_rate="auto"``) of ``features`` coloured by class.

    Args:
        features: ``[N, D]`` pooled features (numpy or torch); L2-normalised first when ``normalize`` (the kNN
            protocol compares normalised features).
        labels: ``[N]`` integer classes; class_names: legend names by class id (``None``: the ids).
        max_points: at most this many points, a seeded random subset, so the map stays fast and readable.
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("The embedding map needs scikit-learn: pip install scikit-learn") from error
    features = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float32)
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).astype(int)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features must be [N, D] with N = len(labels); got {features.shape} and {labels.shape}.")
    if features.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {features.shape[0]}.")
    rng = np.random.default_rng(seed)
    if features.shape[0] > max_points:
        keep = np.sort(rng.choice(features.shape[0], size=max_points, replace=False))
        features, labels = features[keep], labels[keep]
    if normalize:
        features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (features.shape[0] - 1) / 3.0)
    embedding = TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=perplexity,
                     random_state=seed).fit_transform(features)

    classes = np.unique(labels)
    names = [class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c) for c in classes]
    figure = _figure(7.5, 6.0)
    axes = figure.add_subplot()
    import matplotlib

    colormap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, (label, name) in enumerate(zip(classes, names, strict=True)):
        mask = labels == label
        axes.scatter(embedding[mask, 0], embedding[mask, 1], s=9, alpha=0.8, color=colormap(i % colormap.N),
                     label=name, linewidths=0)
    axes.set_title(f"{title} ({features.shape[0]} images)", fontsize=11)
    axes.set_xlabel("t-SNE 1")
    axes.set_ylabel("t-SNE 2")
    axes.set_xticks([])
    axes.set_yticks([])
    if len(classes) <= 20:
        axes.legend(title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=9,
                    markerscale=2.0, frameon=False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
