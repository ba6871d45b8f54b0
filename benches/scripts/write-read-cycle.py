#!/usr/bin/env python3
"""A store in use (issue 13): rounds of a writing build (the aging definition with a new build
argument `N`), an all-hit rebuild and `lamina image ls`, for several binary/store pairs,
interleaved round by round so every pair sees the same machine load. Reports each command's
median, p90, mean and maximum, and the table files each index directory holds at the end.

Usage: write-read-cycle.py ROUNDS NAME=LAMINA=DIR...  where DIR holds `store` and `ctx` as
`benches/scripts/store-aging.sh --keep DIR` leaves them (give each binary its own copy: the
writing builds change the store)."""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_timing import timed  # noqa: E402

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
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    print(f"{name} | {what} | median {statistics.median(times):.2f} | p90 {p90:.2f} | "
          f"mean {statistics.mean(times):.2f} | max {times[-1]:.2f} | n={len(times)}")
for name, _, directory in configs:
    tables = [f for f in os.listdir(f"{directory}/store/index-v1") if f.endswith(".sst")]
    print(f"{name} | table files at the end | {len(tables)}")
print("load average:", " ".join(open("/proc/loadavg").read().split()[:3]))
