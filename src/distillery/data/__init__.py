"""Loading, validating and writing task data."""
