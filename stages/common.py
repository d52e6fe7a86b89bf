"""What every stage command shares: one-line errors and a non-zero exit."""

import functools
import os
import sys
import time
from collections.abc import Callable

from distillery.errors import DistilleryError


def one_line_errors(fn: Callable) -> Callable:
    """Report wall time on success. Turn every failure into one line on stderr and exit status 2:
    a DistilleryError as it is; an operating-system error with the path it names; anything else
    (a bug) with its type, and the traceback only when DISTILLERY_TRACEBACK=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
            print(f"[{fn.__name__.replace('_', '-')} took {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
            return result
        except DistilleryError as e:
            print(f"error: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            print("error: interrupted; outputs are written atomically, so run the command again", file=sys.stderr)
            sys.exit(130)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"error: {where}{e.strerror or e}; check the path, its permissions and free space", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - the one place a stage turns a bug into one line
            if os.environ.get("DISTILLERY_TRACEBACK") == "1":
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            print(f"error: unexpected {type(e).__name__}: {first} (a bug in distillery: please report it; "
                  "DISTILLERY_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)

    return wrapper
