"""The training loop that combines a student, its losses and the logits artifact."""
