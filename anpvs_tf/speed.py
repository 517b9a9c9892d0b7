"""Serving speed of exported models, measured side by side.

Models are timed in one process on the same batch, in interleaved rounds
after a warm-up (tracing excluded): every round times each model once, so
a slow moment of the machine weighs on all of them alike, and the median
of the round medians is reported. Used by train.py's serving check and by
the benchmarks (bench/inference.py, bench/compact_speed.py).
"""

import statistics
import time

import tensorflow as tf

WARM_UP_SECONDS = 0.3
MIN_CALLS = 3


def call_latencies(serve, batch, seconds):
    """Seconds of back-to-back calls of `serve(images=batch)` for about
    `seconds` (at least MIN_CALLS calls); the outputs are fetched, so
    each call's work is really done."""
    batch = tf.constant(batch)
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < MIN_CALLS:
        start = time.perf_counter()
        outputs = serve(images=batch)
        for value in outputs.values():
            value.numpy()
        latencies.append(time.perf_counter() - start)
    return latencies


def median_latencies(serves, batch, rounds, round_seconds):
    """{name: [median seconds per call, one per round]} of the functions
    in `serves` ({name: serving function}), timed in interleaved rounds."""
    for serve in serves.values():
        call_latencies(serve, batch, WARM_UP_SECONDS)
    medians = {name: [] for name in serves}
    for _ in range(rounds):
        for name, serve in serves.items():
            medians[name].append(statistics.median(
                call_latencies(serve, batch, round_seconds)))
    return medians


def speed_report(serves, batch, rounds, round_seconds):
    """{name: {examples_per_sec, median_latency_ms, round_medians_ms}}."""
    report = {}
    for name, medians in median_latencies(
            serves, batch, rounds, round_seconds).items():
        median = statistics.median(medians)
        report[name] = {
            "examples_per_sec": len(batch) / median,
            "median_latency_ms": 1000 * median,
            "round_medians_ms": [1000 * t for t in medians],
        }
    return report
