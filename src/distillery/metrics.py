"""Task metrics. Classification: accuracy, macro-F1 (the mean of every class's F1: imbalanced multi-class
sets), F1 of the positive class (label id 1; GLUE's MRPC), Matthews correlation (CoLA; multi-class too).
Regression (GLUE's STS-B): Pearson and Spearman correlation of the predicted and the gold scores."""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

# metric -> the kind of task it scores
METRICS = {"accuracy": "classification", "macro_f1": "classification", "f1": "classification",
           "mcc": "classification", "pearson": "regression", "spearman": "regression"}


def predictions(problem: str, logits: np.ndarray) -> np.ndarray:
    """(n, outputs) model outputs -> class ids (argmax), or for regression the one output itself."""
    logits = np.asarray(logits)
    return logits[:, 0].astype(np.float64) if problem == "regression" else logits.argmax(-1)


def _correlation(fn, labels: np.ndarray, preds: np.ndarray) -> float:
    if np.ptp(preds) == 0 or np.ptp(labels) == 0:  # undefined; a constant predictor is scored as uncorrelated
        return 0.0
    return float(fn(labels, preds)[0])


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
    if metric == "pearson":
        return _correlation(pearsonr, np.asarray(labels, dtype=np.float64), np.asarray(preds, dtype=np.float64))
    if metric == "spearman":
        return _correlation(spearmanr, np.asarray(labels, dtype=np.float64), np.asarray(preds, dtype=np.float64))
    raise ValueError(f"unknown metric {metric!r}")


def agreement(problem: str, reference: np.ndarray, other: np.ndarray) -> float:
    """How closely two runs of one model agree: the share of rows with the same class, or for regression the
    Pearson correlation of the two runs' scores (1.0: identical up to scale and shift)."""
    a, b = predictions(problem, reference), predictions(problem, other)
    if problem == "regression":
        return 1.0 if np.array_equal(a, b) else _correlation(pearsonr, a, b)
    return float((a == b).mean())


def plateau_step(best: float | None, stalled: int, score: float, min_gain: float,
                 patience: int) -> tuple[float, int, bool, bool]:
    """The plateau rule of every teacher and student after one dev score: returns (the best score so far, the
    scores in a row that beat the best before them by less than `min_gain`, whether `score` is a new best (its
    weights are the ones to keep), whether to stop (`patience` such scores in a row))."""
    if best is None:
        return score, 0, True, False
    stalled = stalled + 1 if score - best < min_gain else 0
    return max(best, score), stalled, score > best, stalled >= patience
