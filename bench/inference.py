"""Serving speed of the compact export vs the gated and the plain LeNet.

Three SavedModels with the same `serving_default` signature, timed in one
process on real MNIST test images, in interleaved rounds after a warm-up:
- plain:   the unpruned, ungated LeNet-5-Caffe (the AT model of
           bench/mnist_budget.py: same architecture, no gates);
- gated:   a trained ANP-VS network in inference mode (gates multiply
           every unit by its thresholded E[pi]); by default the tuned run
           of bench/mnist_budget.py (71 % unit sparsity), and as
           supplementary rows the paper-recipe run (14 %) and the 4x-beta
           run (59 %);
- compact: that network after `compact_network` (pruned units removed).

It also times each layer alone at the largest batch, and the compact
model's first conv cut to a single filter: the floor no pruning of it goes
below, from which it bounds the share of the FLOPs reduction reachable.

For each batch size (1 and 256): median latency per call, examples per
second, parameters, FLOPs (SPEC's counting) and SavedModel bytes. The
compact model's speed-up over the plain one is compared with its FLOPs
reduction (issue 3: at least 0.6x of it at batch 256).

    python bench/inference.py            # needs bench/mnist_budget.py runs

Writes bench/results/inference.json and inference.md.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from timing import median_call_seconds  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The flags of this script; a function, so that other benchmarks can
    import its measuring functions without them."""
    flags.DEFINE_string("runs", "bench/runs/mnist_budget",
                        "Folder of bench/mnist_budget.py workdirs.")
    flags.DEFINE_string("model", "anp_vs_tuned",
                        "The ANP-VS run (workdir name under --runs).")
    flags.DEFINE_list("supplementary", ["anp_vs", "anp_vs_beta4x"],
                      "More ANP-VS runs measured the same way, if present.")
    flags.DEFINE_string("plain", "at",
                        "The ungated run used as the plain unpruned LeNet "
                        "(standard and at have the same architecture, so "
                        "the same speed).")
    flags.DEFINE_list("batch_sizes", ["1", "256"], "Batch sizes to time.")
    flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds.")
    flags.DEFINE_float("round_seconds", 1.0,
                       "Approximate time per model per round.")
    flags.DEFINE_string("output", "bench/results/inference",
                        "Output path without extension (.json and .md).")


def _serving_models(workdir, plain_workdir, scratch):
    """{"plain"|"gated"|"compact": (serving fn, params, flops, bytes)}."""
    import tensorflow as tf

    from anpvs_tf import serving
    from anpvs_tf.complexity import count_complexity
    from anpvs_tf.pruning import compact_network
    from anpvs_tf.workdir import load_trained_model

    _, gated_model = load_trained_model(workdir)
    _, plain_model = load_trained_model(plain_workdir)
    network = gated_model.network
    models = {
        "plain": plain_model.network,
        "gated": network,
        "compact": compact_network(network),
    }
    served = {}
    for name, model in models.items():
        model = serving.logits_model(model)
        path = Path(scratch) / name
        serving.write_saved_model(model, path)
        fn = tf.saved_model.load(str(path)).signatures[serving.SIGNATURE]
        # The gated network computes every unit: count its FLOPs in full.
        size = count_complexity(
            models[name], active="all" if name == "gated" else None
        )
        served[name] = {
            "serve": fn,
            "network": model,
            "params": int(models[name].count_params()),
            "flops": size.flops,
            "savedmodel_bytes": serving.directory_bytes(path),
        }
    return served


def measure(served, images, batch_size, rounds, round_seconds):
    """speed.speed_report of the served models, with their sizes."""
    from anpvs_tf.speed import speed_report

    timed = speed_report({name: entry["serve"]
                          for name, entry in served.items()},
                         images[:batch_size], rounds, round_seconds)
    return {
        name: {**timed[name],
               **{key: entry[key] for key in ("params", "flops",
                                              "savedmodel_bytes")}}
        for name, entry in served.items()
    }


LAYER_CALLS = 10  # distinct inputs per timed function: spreads call overhead


def _alone_ms(layer, x, repeats, seconds):
    """Median ms of one call of `layer` on `x`, timed alone."""
    import tensorflow as tf

    inputs = [x * (1.0 + 1e-6 * i) for i in range(LAYER_CALLS)]
    fn = tf.function(lambda: [layer(t) for t in inputs])
    return 1e3 * median_call_seconds(fn, repeats, seconds) / LAYER_CALLS


def layer_times(model, images, repeats=7, seconds=0.2):
    """{layer name: median ms} of each layer of a chain run alone on its
    real input at this batch size: where the serving time goes."""
    import tensorflow as tf

    x = tf.constant(images)
    times = {}
    for layer in model.layers[1:]:
        times[layer.name] = _alone_ms(layer, x, repeats, seconds)
        x = layer(x)
    return times


def first_conv_floor(model, images, repeats=7, seconds=0.2):
    """(name, median ms) of the model's first layer, a convolution, cut to
    ONE filter and timed alone on the images: what it costs however hard
    pruning shrinks it (on one input channel, its time is mostly patch
    extraction, which does not shrink with the filters)."""
    import keras
    import tensorflow as tf

    first = model.layers[1]
    if not isinstance(first, keras.layers.Conv2D):
        raise ValueError(f"The first layer '{first.name}' is no Conv2D.")
    narrow = type(first).from_config({**first.get_config(), "filters": 1})
    x = tf.constant(images)
    narrow.build(x.shape)
    return first.name, _alone_ms(narrow, x, repeats, seconds)


def floor_lines(per_layer, results):
    """The share of the FLOPs reduction the compact layers could reach if
    the first conv cost only its one-filter floor and every other layer
    what it was timed at alone."""
    first, floor = per_layer["first_conv_one_filter"]
    rest = sum(ms for name, ms in per_layer["compact"].items()
               if name != first)
    plain_ms = sum(per_layer["plain"].values())
    best_ms = floor + rest
    reduction = results["ratios"]["flops_reduction"]
    return [
        f"{first} with one filter: {floor:.3f} ms alone. With {first} at "
        f"that floor and every other layer as timed above ({rest:.3f} ms), "
        f"the compact layers would take {best_ms:.3f} ms against the plain "
        f"layers' {plain_ms:.3f} ms: {plain_ms / best_ms:.2f}x, at most "
        f"{plain_ms / best_ms / reduction:.2f} of the FLOPs reduction "
        f"({reduction:.2f}x).",
        "",
    ]


def layer_lines(per_layer, batch_size):
    names = list(dict.fromkeys([*per_layer["plain"], *per_layer["compact"]]))
    rows = []
    for name in names:
        plain = per_layer["plain"].get(name)
        compact = per_layer["compact"].get(name)
        ratio = f"{plain / compact:.2f}" if plain and compact else "-"
        rows.append((name, f"{plain or 0:.3f}", f"{compact or 0:.3f}", ratio))
    return [
        f"### per layer, batch {batch_size} (each layer alone, median ms)",
        "",
        *markdown_table(
            ("layer", "plain ms", "compact ms", "plain / compact"), rows),
        "",
    ]


def ratios(results):
    plain, compact = results["plain"], results["compact"]
    flops_reduction = plain["flops"] / compact["flops"]
    speedup = compact["examples_per_sec"] / plain["examples_per_sec"]
    return {
        "flops_reduction": flops_reduction,
        "speedup_over_plain": speedup,
        "speedup_over_gated": (
            compact["examples_per_sec"]
            / results["gated"]["examples_per_sec"]),
        "speedup_share_of_flops_reduction": speedup / flops_reduction,
        "params_ratio": compact["params"] / plain["params"],
        "savedmodel_bytes_ratio": (
            compact["savedmodel_bytes"] / plain["savedmodel_bytes"]),
    }


def bench_model(workdir, plain_workdir, images):
    with tempfile.TemporaryDirectory() as scratch:
        served = _serving_models(workdir, plain_workdir, scratch)
        report = {}
        for batch_size in map(int, FLAGS.batch_sizes):
            results = measure(served, images, batch_size, FLAGS.rounds,
                              FLAGS.round_seconds)
            report[f"batch_{batch_size}"] = {
                **results, "ratios": ratios(results)}
        largest = max(map(int, FLAGS.batch_sizes))
        report["per_layer_ms"] = {
            "batch_size": largest,
            **{name: layer_times(served[name]["network"], images[:largest])
               for name in ("plain", "compact")},
        }
        report["per_layer_ms"]["first_conv_one_filter"] = first_conv_floor(
            served["compact"]["network"], images[:largest])
    return report


def markdown(report):
    lines = []
    for title, runs in [("", report)] + [
        (f" (supplementary: {name})", runs)
        for name, runs in report.get("supplementary", {}).items()
    ]:
        for key, results in runs.items():
            if not key.startswith("batch_"):
                continue
            r = results["ratios"]
            lines += [
                f"### {key.replace('_', ' ')}{title}",
                "",
                *markdown_table(
                    ("model", "examples/s", "median latency ms", "params",
                     "FLOPs", "SavedModel bytes"),
                    [(name, f"{m['examples_per_sec']:,.0f}",
                      f"{m['median_latency_ms']:.3f}", f"{m['params']:,}",
                      f"{m['flops']:,}", f"{m['savedmodel_bytes']:,}")
                     for name, m in (
                         (name, results[name])
                         for name in ("plain", "gated", "compact"))]),
            ]
            lines += [
                "",
                f"compact vs plain: FLOPs {r['flops_reduction']:.2f}x "
                f"fewer, {r['speedup_over_plain']:.2f}x faster "
                f"({r['speedup_share_of_flops_reduction']:.2f} of the FLOPs "
                f"reduction); params x{r['params_ratio']:.3f}, SavedModel "
                f"x{r['savedmodel_bytes_ratio']:.3f}. Compact vs gated: "
                f"{r['speedup_over_gated']:.2f}x faster.",
                "",
            ]
        if "per_layer_ms" in runs:
            per_layer = runs["per_layer_ms"]
            lines += layer_lines(per_layer, per_layer["batch_size"])
            lines += floor_lines(
                per_layer, runs[f"batch_{per_layer['batch_size']}"])
    return "\n".join(lines)


def write_report(output, report, table):
    """report -> output.json, table -> output.md (both atomic); prints the
    table."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(output.with_suffix(".json"), report)
    files.write_text(output.with_suffix(".md"), table + "\n")
    print(table)


def main(argv):
    del argv
    import os

    import tensorflow as tf

    from anpvs_tf import data

    runs = Path(FLAGS.runs)
    images, _ = data.load_arrays("mnist", "test", "embedded")
    report = bench_model(runs / FLAGS.model, runs / FLAGS.plain, images)
    report["model"] = str(runs / FLAGS.model)
    report["plain_model"] = str(runs / FLAGS.plain)
    report["supplementary"] = {
        name: bench_model(runs / name, runs / FLAGS.plain, images)
        for name in FLAGS.supplementary
        if (runs / name / "results.json").exists()
    }
    report["setup"] = {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
        "rounds": FLAGS.rounds,
        "round_seconds": FLAGS.round_seconds,
        "images": "embedded MNIST test set (real images)",
        "command": "python bench/inference.py " + " ".join(sys.argv[1:]),
    }
    write_report(FLAGS.output, report, markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(cli.run_main(main))
