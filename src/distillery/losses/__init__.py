"""Distillation losses, registered by short stable names used in params.yaml."""

from distillery.losses.kd import LOSSES

__all__ = ["LOSSES"]
