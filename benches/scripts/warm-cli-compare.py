#!/usr/bin/env python3
"""Times warm `lamina build` (all hits) and `lamina image ls` for several binary/store pairs,
interleaved run by run so every pair sees the same machine load (issue 13). Reports each
command's median and p90, the median of its per-run ratios to the first pair (paired: both
runs of a ratio saw the same minute of the machine), and what each index directory holds:
WAL files and bytes (every open replays them) and table files.

A store's WAL phase moves its read times more than its age does: opens replay the WAL the
last writing builds left (one build's worth in a store just made, up to eight in one used for
a while), so compare an aged store with a young one that holds as many WAL files (age it with
a few writing builds) as well as with a fresh one.

Usage: warm-cli-compare.py RUNS NAME=LAMINA=STORE=CONTEXT...  (the context of
benches/scripts/store-aging.sh --keep DIR is DIR/ctx; each store must hold age:base)."""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from warm_bench import index_state, p90, timed  # noqa: E402

runs = int(sys.argv[1])
configs = [a.split("=") for a in sys.argv[2:]]  # name=binary=store=ctx


def commands(binary, store, ctx):
    return {
        "warm rebuild": [binary, "--store", store, "build", ctx, "--tag", "age:base", "--progress", "plain"],
        "image ls": [binary, "--store", store, "image", "ls"],
    }



for name, binary, store, ctx in configs:
    for command in commands(binary, store, ctx).values():
        timed(command)
times = {}
for _ in range(runs):
    for name, binary, store, ctx in configs:
        for kind, command in commands(binary, store, ctx).items():
            times.setdefault((name, kind), []).append(timed(command))
first = configs[0][0]
for (name, kind), t in times.items():
    paired = ""
    if len(configs) > 1:
        ratio = statistics.median(a / b for a, b in zip(t, times[(first, kind)]))
        paired = f" | paired ratio to {first} {ratio:.3f}"
    print(f"{name} | {kind} | median {statistics.median(t):.2f} | p90 {p90(sorted(t)):.2f}"
          f"{paired} | n={len(t)}")
for name, _, store, _ in configs:
    print(f"{name} | index | {index_state(store)}")
print("load", open("/proc/loadavg").read().split()[:3])
