"""What every stage command shares: one-line errors and a non-zero exit."""

import functools
import sys
from collections.abc import Callable

from distillery.errors import DistilleryError


def one_line_errors(fn: Callable) -> Callable:
    """Turn a DistilleryError into `error: <message>` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DistilleryError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
