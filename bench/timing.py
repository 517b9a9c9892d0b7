"""Shared by the benchmarks that time: calls, CPU idle, peak, kernels.
"""

import re
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


def cpu_peak():
    """FP32 peak FLOP/s = cores x clock x FLOPs per cycle, with the inputs."""
    import os

    text = Path("/proc/cpuinfo").read_text()
    flags_line = re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()
    mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M).group(1))
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1)
    cores = len(os.sched_getaffinity(0))
    # FMA units x fp32 lanes x 2 (multiply + add). Server cores with
    # AVX-512 have two 512-bit FMA units; AVX2 cores two 256-bit ones.
    if "avx512f" in flags_line:
        per_cycle, why = 2 * 16 * 2, "AVX-512: 2 FMA units x 16 fp32 x 2"
    elif "avx2" in flags_line and "fma" in flags_line:
        per_cycle, why = 2 * 8 * 2, "AVX2: 2 FMA units x 8 fp32 x 2"
    else:
        per_cycle, why = 4 * 2, "SSE: 4 fp32 x 2 (no FMA)"
    peak = cores * mhz * 1e6 * per_cycle
    return {
        "cpu": model,
        "cores": cores,
        "clock_ghz": mhz / 1000,
        "flops_per_cycle_per_core": per_cycle,
        "flops_per_cycle_reason": why,
        "peak_gflops": peak / 1e9,
    }


CALLS_PER_FUNCTION = 10


def _layer_kernels(layer, batch):
    """(FLOPs of one forward, {pass: tf.function}) of a conv or dense
    layer at `batch`: forward, backprop to the input, backprop to the
    kernel. Each function runs its kernel CALLS_PER_FUNCTION times on
    distinct inputs, so the per-call overhead of a function (~0.1 ms, as
    long as fc2's whole kernel) is spread out."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def constants(*shape):
        return [tf.constant(rng.standard_normal(shape).astype("float32"))
                for _ in range(CALLS_PER_FUNCTION)]

    kernel = layer.kernel.shape
    in_shape = (batch, *layer.input.shape[1:])
    out_shape = (batch, *layer.output.shape[1:])
    xs, dys, ws = constants(*in_shape), constants(*out_shape), constants(
        *kernel)
    if hasattr(layer, "filters"):
        strides = [1, layer.strides[0], layer.strides[1], 1]
        padding = layer.padding.upper()
        passes = {
            "forward": lambda x, dy, w: tf.nn.conv2d(x, w, strides, padding),
            "to_input": lambda x, dy, w: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=in_shape, filter=w, out_backprop=dy,
                strides=strides, padding=padding),
            "to_kernel": lambda x, dy, w: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=kernel, out_backprop=dy,
                strides=strides, padding=padding),
        }
        macs = int(np.prod(out_shape[1:])) * int(np.prod(kernel[:-1]))
    else:
        passes = {
            "forward": lambda x, dy, w: tf.matmul(x, w),
            "to_input": lambda x, dy, w: tf.matmul(dy, w, transpose_b=True),
            "to_kernel": lambda x, dy, w: tf.matmul(x, dy, transpose_a=True),
        }
        macs = int(np.prod(kernel))

    def repeated(one):
        return tf.function(lambda: [one(*args) for args in zip(xs, dys, ws)])

    return 2 * macs, {k: repeated(f) for k, f in passes.items()}


def kernel_ceiling(network, peak, batch_size, pgd_steps, repeats=7,
                   seconds=0.3):
    """The share of peak the train step could reach if every conv and
    matmul ran exactly as fast as it does alone, with nothing else between
    them (activations, pooling, gates and the optimizer cost nothing).

    Each layer's forward, backprop-to-input and backprop-to-kernel kernel
    is timed alone at the training batch size (median of `repeats`). A PGD
    step runs forward + to_input of every layer; the update runs forward +
    to_kernel of every layer and to_input of all but the first (nothing
    needs the gradient w.r.t. the images there), for the clean and the
    adversarial pass. Any real train step is slower,
    so no schedule can beat this share of peak with these kernels.
    """
    import keras

    layers = [layer for layer in network.layers
              if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    rows, pgd_seconds, update_seconds, flops = [], 0.0, 0.0, 0
    for layer in layers:
        forward_flops, passes = _layer_kernels(layer, batch_size)
        times = {}
        for name, fn in passes.items():
            times[name] = median_call_seconds(
                fn, repeats, seconds) / CALLS_PER_FUNCTION
        batch_flops = forward_flops * batch_size
        rows.append({
            "layer": layer.name,
            "forward_flops_per_example": forward_flops,
            **{f"{name}_ms": 1e3 * t for name, t in times.items()},
            **{f"{name}_share_of_peak":
               batch_flops / t / (peak["peak_gflops"] * 1e9)
               for name, t in times.items()},
        })
        pgd_seconds += times["forward"] + times["to_input"]
        first = layer is layers[0]
        update_seconds += 2 * (times["forward"] + times["to_kernel"]
                               + (0.0 if first else times["to_input"]))
        flops += forward_flops
    step_seconds = pgd_steps * pgd_seconds + update_seconds
    step_flops = (2 * pgd_steps + 6) * flops * batch_size
    return {
        "layers": rows,
        "step_seconds_lower_bound": step_seconds,
        "examples_per_sec_upper_bound": batch_size / step_seconds,
        "share_of_peak_upper_bound":
            step_flops / step_seconds / (peak["peak_gflops"] * 1e9),
    }
