#!/usr/bin/env python3
"""Parses build logs and prints the tables of the cold-path benchmarks (cold-lib.sh).

  cold_report.py steps lamina LOG      `lamina build --progress json` output -> "STEP<TAB>ms"
  cold_report.py steps buildkit LOG    `docker build --progress=plain` output -> "STEP<TAB>ms"
  cold_report.py table RESULTS.tsv     "TOOL<TAB>METRIC<TAB>VALUE" rows -> markdown table

Steps are named by their Dockerfile text (`WORKDIR /app`, `RUN true`); lamina's total is
`(build total)`, BuildKit's export `(export)`. BuildKit prints step times to 0.1 s, and
does not show config-only steps (ENV, USER) at all: those have no BuildKit figure.
"""
import json
import re
import statistics
import sys


def lamina_steps(path):
    names = {}
    for line in open(path, errors="replace"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = event.get("event")
        if kind == "step_started":
            names[event["index"]] = event["text"]
        elif kind == "step_finished":
            name = names.get(event["index"], f"step {event['index']}")
            suffix = " (cached)" if event.get("cached") else ""
            print(f"{name}{suffix}\t{event['duration_ms']}")
        elif kind == "result":
            print(f"(build total)\t{event['duration_ms']}")


def buildkit_steps(path):
    names = {}
    vertex = re.compile(r"^#(\d+) (.*)$")
    for line in open(path, errors="replace"):
        m = vertex.match(line.rstrip("\n"))
        if not m:
            continue
        number, rest = m.groups()
        if number not in names:
            step = re.match(r"^\[(?:[\w.-]+ )?\d+/\d+\] (.*)$", rest)
            if step:
                names[number] = step.group(1)
            elif rest.startswith("exporting to image"):
                names[number] = "(export)"
            else:
                names[number] = None
            continue
        name = names[number]
        if name is None or name.startswith("FROM "):
            continue
        done = re.match(r"^DONE (\d+(?:\.\d+)?)s$", rest)
        if done:
            print(f"{name}\t{float(done.group(1)) * 1000:.0f}")
        elif rest == "CACHED":
            print(f"{name} (cached)\t0")


def fmt(value):
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def table(path):
    tools, metrics, values = [], [], {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            continue
        tool, metric, value = parts
        if tool not in tools:
            tools.append(tool)
        if metric not in metrics:
            metrics.append(metric)
        values.setdefault((tool, metric), []).append(float(value))
    # Every other tool is compared with BuildKit's medians.
    reference = "buildkit" if "buildkit" in tools else None
    others = [t for t in tools if t != reference] if reference else []
    header = "| metric | " + " | ".join(f"{t} median [min–max]" for t in tools)
    header += "".join(f" | {t} / {reference}" for t in others)
    print(header + " |")
    print("|---" * (len(tools) + 1 + len(others)) + "|")
    for metric in metrics:
        cells, medians = [], {}
        for tool in tools:
            v = values.get((tool, metric))
            if not v:
                cells.append("–")
                continue
            medians[tool] = statistics.median(v)
            cells.append(f"{fmt(medians[tool])} [{fmt(min(v))}–{fmt(max(v))}] (n={len(v)})")
        # Long RUN lines are cut: the Dockerfile is printed above the table.
        label, cached = metric, ""
        if label.endswith(" (cached)"):
            label, cached = label[: -len(" (cached)")], " (cached)"
        label = (label if len(label) <= 70 else label[:69] + "…") + cached
        label = label.replace("|", "\\|")
        row = f"| {label} | " + " | ".join(cells)
        for tool in others:
            a, b = medians.get(tool), medians.get(reference)
            row += f" | {a / b:.2f}x" if a is not None and b else " | –"
        print(row + " |")


def main():
    if sys.argv[1:3] == ["steps", "lamina"]:
        lamina_steps(sys.argv[3])
    elif sys.argv[1:3] == ["steps", "buildkit"]:
        buildkit_steps(sys.argv[3])
    elif sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
