"""Metrics, latency and the report over the teacher and every student."""
