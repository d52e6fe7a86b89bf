"""Distillation losses, registered by short stable names used in params.yaml.

Output-layer losses (kd.py) take (student_logits, teacher_logits, labels, temperature); feature
losses (features.py, `kind == "features"`) take (student Features, teacher Features, context).
"""

from distillery.losses import features as _features  # noqa: F401  (registers the feature losses)
from distillery.losses.kd import LOSSES

__all__ = ["LOSSES"]
