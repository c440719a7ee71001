"""Evaluation of frozen encoders (kNN monitor)."""

from .knn import extract_features, knn_accuracy, knn_predict, neighbour_label_agreement

__all__ = ["extract_features", "knn_accuracy", "knn_predict", "neighbour_label_agreement"]
