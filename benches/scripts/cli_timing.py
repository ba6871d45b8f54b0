"""Wall time of one command run, for the benchmark scripts beside this file."""

import os
import sys
import time

_devnull = os.open(os.devnull, os.O_WRONLY)


def timed(command):
    """Milliseconds of one run, output discarded; fork and exec directly, so no shell or
    Python start counts. Exits the script if the command fails."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.dup2(_devnull, 1)
        os.dup2(_devnull, 2)
        os.execv(command[0], command)
    _, status, _ = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return (time.perf_counter() - start) * 1e3
