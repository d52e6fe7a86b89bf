"""Task metrics: accuracy, macro-F1 (the mean of every class's F1: imbalanced multi-class sets), F1 of the
positive class (MRPC), Matthews correlation (CoLA; multi-class too)."""

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def task_metric(metric: str, labels: np.ndarray, preds: np.ndarray) -> float:
    if len(labels) != len(preds):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels: every evaluation row must be scored")
    if metric == "accuracy":
        return float(accuracy_score(labels, preds))
    if metric == "macro_f1":
        return float(f1_score(labels, preds, average="macro"))
    if metric == "f1":
        return float(f1_score(labels, preds))
    if metric == "mcc":
        return float(matthews_corrcoef(labels, preds))
    raise ValueError(f"unknown metric {metric!r}")
