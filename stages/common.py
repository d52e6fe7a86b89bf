"""What every stage command shares: one-line errors and a non-zero exit."""

import functools
import sys
import time
from collections.abc import Callable

from distillery.errors import DistilleryError


def one_line_errors(fn: Callable) -> Callable:
    """Turn a DistilleryError into `error: <message>` on stderr and exit status 2; report wall time."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
            print(f"[{fn.__name__.replace('_', '-')} took {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
            return result
        except DistilleryError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
