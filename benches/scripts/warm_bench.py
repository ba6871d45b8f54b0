"""What the warm-CLI benchmark scripts beside this file share: timing one run, the p90 of
a sorted list, and what a store's index directory holds."""

import os
import sys
import time

_devnull = os.open(os.devnull, os.O_WRONLY)


def timed(command):
    """Milliseconds of one run, output discarded. Spawned with `posix_spawn` (a vfork, as
    hyperfine's): a fork of this Python process added ~1.6 ms to every run, which shrank
    the ratios between stores by a fifth. Exits the script if the command fails."""
    start = time.perf_counter()
    pid = os.posix_spawn(
        command[0],
        command,
        os.environ,
        file_actions=[(os.POSIX_SPAWN_DUP2, _devnull, 1), (os.POSIX_SPAWN_DUP2, _devnull, 2)],
    )
    _, status, _ = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return (time.perf_counter() - start) * 1e3


def p90(ordered):
    """The 90th percentile of `ordered` (sorted, not empty)."""
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def index_state(store):
    """The WAL files (every open replays them) and table files of `store`'s index."""
    # index-v2 since store format v3; index-v1 before, for timing older builds.
    index = os.path.join(store, "index-v2")
    if not os.path.isdir(index):
        index = os.path.join(store, "index-v1")
    names = os.listdir(index)
    wal = [n for n in names if n.endswith(".log")]
    wal_bytes = sum(os.path.getsize(os.path.join(index, n)) for n in wal)
    tables = sum(n.endswith(".sst") for n in names)
    return f"{len(wal)} WAL files ({wal_bytes / 1024:.0f} KiB), {tables} table files"
