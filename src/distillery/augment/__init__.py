"""Tang et al. 2019's data augmentation for distillation: masking, POS-guided replacement, n-grams."""
