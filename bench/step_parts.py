"""Where ANP-VS's train step costs more than AT's: the attack and the update
timed apart, in paired rounds.

LeNet-5-Caffe, PGD-20, batch 64, fixed real MNIST images, one traced
function per part (no `fit`, no input pipeline):

- attack: `ANPVSModel.craft` of AT, of ANP-VS with its gates folded into
  the kernels (anpvs_tf/folding.py, what training runs) and of ANP-VS with
  the gates multiplying every activation map (`fold_plan` emptied: the
  library before the folding);
- update: the train step on a fixed adversarial batch (the attack left
  out) of AT, of ANP-VS, and of ANP-VS with its gates frozen (no sampled
  masks, no gate gradient).

Rounds are interleaved; each part's figure is its median ms per call, and
each ANP-VS variant's cost is the median over rounds of its time / AT's in
the same round (a paired ratio, so the machine's drift cancels).

    python bench/step_parts.py

Writes bench/results/step_parts.{json,md}.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402
# The same models, PGD steps and batch size as bench/throughput.py.
from throughput import make_model  # noqa: E402

flags.DEFINE_float("seconds", 0.8, "Seconds of calls per part and round.")
FLAGS = flags.FLAGS
FLAGS.set_default("output", "bench/results/step_parts")
FLAGS.set_default("rounds", 20)


def parts(images, labels):
    """{part name: traced function}; "at" parts are the baselines."""
    import tensorflow as tf

    def attack(model):
        return tf.function(lambda: model.craft(images, labels, model.attack))

    def update(model):
        adversarial = model.craft(images, labels, model.attack)
        model.training_examples = lambda x, y: adversarial
        return tf.function(lambda: model.train_step((images, labels)))

    unfolded = make_model("anp_vs", seed=0)
    unfolded.fold_plan = []
    frozen = make_model("anp_vs", seed=0)
    frozen.freeze_gates()
    return {
        "attack: at": attack(make_model("at", seed=0)),
        "attack: anp_vs, gates folded": attack(make_model("anp_vs", seed=0)),
        "attack: anp_vs, gates multiplying": attack(unfolded),
        "update: at": update(make_model("at", seed=0)),
        "update: anp_vs": update(make_model("anp_vs", seed=0)),
        "update: anp_vs, gates frozen": update(frozen),
    }


def main(argv):
    del argv
    import tensorflow as tf

    import models  # noqa: F401  (registers the zoo)
    from anpvs_tf import data

    images, labels = data.load_arrays("mnist", "train", "embedded")
    images = tf.constant(images[:FLAGS.batch_size])
    labels = tf.constant(labels[:FLAGS.batch_size])
    functions = parts(images, labels)
    for function in functions.values():  # trace and warm up
        function()
        function()
    ms = {name: [] for name in functions}
    for _ in range(FLAGS.rounds):
        for name, function in functions.items():
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < FLAGS.seconds:
                function()
                calls += 1
            ms[name].append(1e3 * (time.perf_counter() - start) / calls)

    report = {"rounds": FLAGS.rounds, "pgd_steps": FLAGS.pgd_steps,
              "batch_size": FLAGS.batch_size, "parts": {}}
    for name, values in ms.items():
        kind = name.split(":")[0]
        baseline = ms[f"{kind}: at"]
        report["parts"][name] = {
            "median_ms": statistics.median(values),
            "cost_vs_at": statistics.median(
                v / b for v, b in zip(values, baseline)),
            "ms_per_round": values,
        }
    files.write_json(f"{FLAGS.output}.json", report)
    lines = [
        "LeNet-5-Caffe, PGD-20, batch 64, fixed real MNIST images: the "
        "attack and the update of one train step timed apart, "
        f"{FLAGS.rounds} interleaved rounds; cost vs AT = median over "
        "rounds of the part's time / AT's in the same round.", ""]
    lines += markdown_table(
        ("part", "median ms per call", "cost vs AT"),
        [(name, f"{r['median_ms']:.1f}", f"{r['cost_vs_at']:.3f}x")
         for name, r in report["parts"].items()])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
