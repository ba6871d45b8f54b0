#!/usr/bin/env python3
"""All-hit rebuild through the Python package against the same rebuild through the Rust
Engine (benches/engine_rebuild.rs), on one warm store, alternating rounds.

usage: python-vs-rust-rebuild.py ENGINE_REBUILD_BINARY [RUNS] [ROUNDS]

Run it with the Python that has the `lamina` package installed, as root (the warm-up build
runs RUN steps). The definition: an offline busybox base (Debian's static busybox on
scratch) and six steps on it (ENV, two RUNs, COPY, WORKDIR, CMD). Each round times RUNS
rebuilds in Python, then RUNS in a fresh Rust process (the Python engine is closed first:
one process holds a store at a time). Prints each round's medians and the difference.

On a loaded machine wall times vary by more than the binding costs (waits for a core, other
processes' fsyncs), so each round also gives the CPU time one rebuild costs the process,
every thread counted: Python's from time.process_time() around its runs, Rust's from the
child's rusage with RUNS runs less a run of the binary with 0 runs (its start-up, store
open and warm-up build), divided by RUNS. The difference is the package's own cost.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import lamina

APP = """FROM busybox:offline
ENV APP_MODE=production
RUN echo built > /built.txt
RUN echo more > /more.txt
COPY app.txt /srv/app.txt
WORKDIR /srv
CMD ["cat", "/srv/app.txt"]
"""


def rust_run(binary: str, store: str, dockerfile: str, runs: int):
    """(CPU milliseconds the child used, its JSON output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [binary, store, dockerfile, str(runs)], check=True, capture_output=True, text=True
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu * 1000, json.loads(out)


def main() -> None:
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    work = tempfile.mkdtemp(prefix="lamina-rebuild-")
    try:
        os.makedirs(f"{work}/base/rootfs/bin")
        shutil.copy("/bin/busybox", f"{work}/base/rootfs/bin/busybox")
        for applet in ("sh", "echo", "cat"):
            os.symlink("busybox", f"{work}/base/rootfs/bin/{applet}")
        with open(f"{work}/base/Dockerfile", "w") as f:
            f.write("FROM scratch\nCOPY rootfs/ /\n")
        os.makedirs(f"{work}/app")
        with open(f"{work}/app/Dockerfile", "w") as f:
            f.write(APP)
        with open(f"{work}/app/app.txt", "w") as f:
            f.write("hello\n")
        store = f"{work}/store"
        engine = lamina.Engine(store)
        engine.build(lamina.Image.from_dockerfile(f"{work}/base/Dockerfile"), tag="busybox:offline")
        image = lamina.Image.from_dockerfile(f"{work}/app/Dockerfile")
        engine.build(image, tag="bench-app:1")
        del engine
        gc.collect()
        for round_number in range(1, rounds + 1):
            engine = lamina.Engine(store)
            engine.build(image, tag="bench-app:1")  # warm-up, as the Rust side does
            python_ms = []
            cpu_started = time.process_time()
            for _ in range(runs):
                started = time.perf_counter()
                result = engine.build(image, tag="bench-app:1")
                python_ms.append((time.perf_counter() - started) * 1000)
                assert result.steps_cached == result.steps == 6, result
            python_cpu = (time.process_time() - cpu_started) * 1000 / runs
            del engine
            gc.collect()
            rust_idle_cpu, _ = rust_run(binary, store, f"{work}/app/Dockerfile", 0)
            rust_cpu_total, rust = rust_run(binary, store, f"{work}/app/Dockerfile", runs)
            rust_cpu = (rust_cpu_total - rust_idle_cpu) / runs
            py_median = statistics.median(python_ms)
            rust_median = statistics.median(rust["ms"])
            print(
                f"round {round_number}: {runs} rebuilds each; median wall python "
                f"{py_median:.3f} ms, rust {rust_median:.3f} ms ({py_median - rust_median:+.3f}); "
                f"CPU per rebuild python {python_cpu:.3f} ms, rust {rust_cpu:.3f} ms "
                f"({python_cpu - rust_cpu:+.3f} ms)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
