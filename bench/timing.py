"""Shared by the benchmarks that time one function alone."""

import statistics
import time
from pathlib import Path


def median_call_seconds(fn, repeats, seconds):
    """Median seconds per call of `fn` over `repeats` windows of about
    `seconds` each, after one warm-up call (tracing excluded)."""
    fn()
    samples = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            count += 1
        samples.append((time.perf_counter() - start) / count)
    return statistics.median(samples)


def cpu_ticks():
    """(idle, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in
              Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)
