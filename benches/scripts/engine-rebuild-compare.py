#!/usr/bin/env python3
"""In-process all-hit rebuilds (`engine-rebuild`, benches/engine_rebuild.rs) of several
builds of it on one warm store, alternating binaries round by round (issue 13): this VM's
speed changes by up to 1.6x from one minute to the next, so only rounds next to each other
compare. Each round runs every binary once for RUNS rebuilds (the order reversed every other
round) and takes the median; the report gives each binary's median of round medians and the
median of its per-round ratios to the first binary.

Usage: engine-rebuild-compare.py ROUNDS RUNS STORE CONTEXT NAME=ENGINE_REBUILD...

CONTEXT holds the Dockerfile (e.g. DIR/ctx of benches/scripts/store-aging.sh --keep DIR);
the store must hold one build of it tagged `bench-app:1` (engine-rebuild refuses a store
that is not warm)."""

import json
import statistics
import subprocess
import sys

if len(sys.argv) < 6:
    sys.exit(__doc__)
rounds, runs, store, context = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
binaries = [arg.split("=", 1) for arg in sys.argv[5:]]
medians = {name: [] for name, _ in binaries}
for round_index in range(rounds):
    order = binaries if round_index % 2 == 0 else binaries[::-1]
    for name, binary in order:
        out = subprocess.run(
            [binary, store, "Dockerfile", runs],
            cwd=context,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        medians[name].append(statistics.median(json.loads(out)["ms"]))
first = binaries[0][0]
for name, _ in binaries:
    ratio = statistics.median(a / b for a, b in zip(medians[name], medians[first]))
    print(
        f"{name}: {statistics.median(medians[name]):.3f} ms median of round medians "
        f"(rounds {min(medians[name]):.3f}-{max(medians[name]):.3f}); "
        f"paired ratio to {first}: {ratio:.3f}"
    )
