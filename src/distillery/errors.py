"""One exception type for every input problem a user can fix.

Stages catch it and print its message as one line, then exit non-zero. Messages say what
was wrong, where (file and line, or param name) and what to do.
"""


class DistilleryError(Exception):
    """A user-facing error: bad input, bad param, mismatched artifacts."""
