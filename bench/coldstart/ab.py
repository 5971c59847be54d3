#!/usr/bin/env python3
"""A/B of the first attempt in a fresh process, without PAM: banguard's
open + attempt of two builds of bg-coldstart, against SQLite's own floor
(the smallest attempt transaction) and the process alone, interleaved in
one loop so that the machine's drift hits every variant alike.
Results: BENCHMARKS.md §2.

usage (root): bench/coldstart/ab.py OLD_BG_COLDSTART NEW_BG_COLDSTART [RUNS]
Build each with `cargo build --release -p banguard-e2e --bin bg-coldstart`
in the tree to compare. Stores: the runtime state on tmpfs (/dev/shm), the
store on the disk, one pair per build, created before the loop.
"""
import os, statistics, subprocess, sys, tempfile, time

old, new = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 400
disk = tempfile.mkdtemp(prefix="bg-ab.", dir="/var/tmp")
shm = tempfile.mkdtemp(prefix="bg-ab.", dir="/dev/shm")
try:
    files = {}
    for name in ("old", "new"):
        os.mkdir(f"{disk}/{name}", 0o700)
        os.mkdir(f"{shm}/{name}", 0o700)
        files[name] = (f"{disk}/{name}/banguard.db", f"{shm}/{name}/runtime.db")
    # Create both stores (and the floor's runtime file) before timing.
    for name, exe in (("old", old), ("new", new)):
        subprocess.run([exe, "banguard", *files[name], "10.200.0.1"], check=True)
    floor_rt = files["new"][1]

    def timed(argv):
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        return (time.perf_counter() - t) * 1000

    samples = {k: [] for k in ("none", "sqlite", "old", "new")}
    for i in range(runs + 20):
        host = f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}"
        variants = [
            ("none", [new, "none"]),
            ("sqlite", [new, "sqlite", floor_rt, f"{host}/32"]),
            ("old", [old, "banguard", *files["old"], host]),
            ("new", [new, "banguard", *files["new"], host]),
        ]
        k = i % len(variants)
        for name, argv in variants[k:] + variants[:k]:
            ms = timed(argv)
            if i >= 20:
                samples[name].append(ms)
    med = {k: statistics.median(v) for k, v in samples.items()}
    p99 = {k: sorted(v)[int(0.99 * (len(v) - 1))] for k, v in samples.items()}
    print(f"# {runs} fresh processes per variant, interleaved (ms)")
    print("| variant | median | p99 | added to the process: median | above SQLite's floor: median |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("none", "process alone"), ("sqlite", "SQLite floor: open, BEGIN IMMEDIATE, count, insert, COMMIT"),
                        ("old", "banguard open + attempt, before"), ("new", "banguard open + attempt, after")):
        above = f"{med[name] - med['sqlite']:.2f}" if name in ("old", "new") else ""
        print(f"| {label} | {med[name]:.2f} | {p99[name]:.2f} | {med[name] - med['none']:.2f} | {above} |")
finally:
    subprocess.run(["rm", "-rf", disk, shm])
