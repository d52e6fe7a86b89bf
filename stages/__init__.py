"""Thin Typer commands, one per DVC stage: options -> frozen config -> one library call."""
