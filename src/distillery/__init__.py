"""distillery: distil fine-tuned BERT teachers into small, fast students."""

__version__ = "0.1.0"
