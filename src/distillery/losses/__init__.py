"""Distillation losses, registered by the short names used in params.yaml (see `base.py` for the
protocol). `kd.py`: losses on the output layer; `features.py`: losses on the models' insides;
`exits.py`: losses on a FastBERT student's early exits; `tokens.py`: per-token losses of a
sequence-to-sequence student."""

from distillery.losses import exits as _exits  # noqa: F401  (registers the early-exit losses)
from distillery.losses import features as _features  # noqa: F401  (registers the feature losses)
from distillery.losses import kd as _kd  # noqa: F401  (registers the output-layer losses)
from distillery.losses import tokens as _tokens  # noqa: F401  (registers the per-token losses)
from distillery.losses.base import LOSSES, NEEDS, Loss, LossContext

__all__ = ["LOSSES", "NEEDS", "Loss", "LossContext"]
