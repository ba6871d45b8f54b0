#!/usr/bin/env python3
"""Times warm `lamina build` (all hits) and `lamina image ls` for several binary/store pairs,
interleaved run by run so every pair sees the same machine load (issue 13).

Usage: warm-cli-compare.py RUNS NAME=LAMINA=STORE=CONTEXT...  (the context of
benches/scripts/store-aging.sh --keep DIR is DIR/ctx; each store must hold age:base)."""

import statistics
import subprocess
import sys
import time

runs = int(sys.argv[1])
configs = [a.split("=") for a in sys.argv[2:]]  # name=binary=store=ctx
def cmds(b, s, c):
    return {"warm rebuild": [b, "--store", s, "build", c, "--tag", "age:base", "--progress", "plain"],
            "image ls": [b, "--store", s, "image", "ls"]}
res = {}
for name, b, s, c in configs:
    for k, cmd in cmds(b, s, c).items():
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for i in range(runs):
    for name, b, s, c in configs:
        for k, cmd in cmds(b, s, c).items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res.setdefault((name, k), []).append((time.perf_counter() - t) * 1e3)
for (name, k), t in res.items():
    t.sort()
    p90 = t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
    print(f"{name} | {k} | median {statistics.median(t):.1f} | p90 {p90:.1f} | min {t[0]:.1f} | n={len(t)}")
print("load", open("/proc/loadavg").read().split()[:3])
