"""Fine-tuning the teacher and loading it back."""
