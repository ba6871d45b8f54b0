#!/usr/bin/env python3
"""A store in use (issue 13): rounds of a writing build (the aging definition with a new build
argument `N`), an all-hit rebuild and `lamina image ls`, for several binary/store pairs,
interleaved round by round so every pair sees the same machine load. Reports each command's
median, p90, mean and maximum, and what each index directory holds at the end (WAL files,
table files).

Usage: write-read-cycle.py ROUNDS NAME=LAMINA=DIR...  where DIR holds `store` and `ctx` as
`benches/scripts/store-aging.sh --keep DIR` leaves them (give each binary its own copy: the
writing builds change the store)."""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from warm_bench import index_state, p90, timed  # noqa: E402

rounds = int(sys.argv[1])
configs = [a.split("=") for a in sys.argv[2:]]


results = {}
first_n = int(time.time()) % 100_000 * 100
for r in range(rounds):
    for name, lamina, directory in configs:
        store, ctx = f"{directory}/store", f"{directory}/ctx"
        commands = {
            "writing build": [lamina, "--store", store, "build", ctx, "--build-arg",
                              f"N={first_n + r}", "--tag", "age:latest", "--progress", "plain"],
            "all-hit rebuild": [lamina, "--store", store, "build", ctx, "--tag", "age:base",
                                "--progress", "plain"],
            "image ls": [lamina, "--store", store, "image", "ls"],
        }
        for what, command in commands.items():
            results.setdefault((name, what), []).append(timed(command))
for (name, what), times in results.items():
    times.sort()
    print(f"{name} | {what} | median {statistics.median(times):.2f} | p90 {p90(times):.2f} | "
          f"mean {statistics.mean(times):.2f} | max {times[-1]:.2f} | n={len(times)}")
for name, _, directory in configs:
    print(f"{name} | index at the end | {index_state(f'{directory}/store')}")
print("load average:", " ".join(open("/proc/loadavg").read().split()[:3]))
