"""Evaluates a trained workdir: accuracy, PGD robustness, size.

    python evaluate.py --workdir=runs/quickstart
    python evaluate.py --workdir=runs/quickstart --pgd_steps=100 --epsilon=0.2

Prints and writes (into the workdir, or --output) clean accuracy, PGD-k
accuracy (default 40 steps, random start, the training epsilon), the
vulnerability, active units per gate, unit sparsity, memory %, FLOPs
speed-up and the parameter count of the pruned network.
"""

from anpvs_tf import cli  # noqa: F401  (sets the Keras backend first)

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("workdir", None,
                        "A workdir written by train.py.", required=True)
    flags.DEFINE_float(
        "epsilon", None,
        "L-inf radius in [0, 1] pixel units (default: the training eps).")
    flags.DEFINE_integer("pgd_steps", 40, "PGD steps (0: random noise only).")
    flags.DEFINE_float("pgd_step_size", None,
                       "PGD step size (default: the training step size).")
    flags.DEFINE_bool("random_start", True,
                      "Start PGD at a random point of the eps ball.")
    flags.DEFINE_integer("test_examples", None,
                         "Evaluate on the first N test examples "
                         "(default: the whole test set).")
    flags.DEFINE_integer("batch_size", None, "Evaluation batch size.")
    flags.DEFINE_integer("seed", 0, "Seed of the attack's random start.")
    flags.DEFINE_enum("data_source", None, ["embedded", "idx", "tfds"],
                      "Where the test set comes from (default: as trained).")
    flags.DEFINE_string("data_dir", None,
                        "Folder of IDX files, or tfds data_dir.")
    flags.DEFINE_string(
        "output", None,
        "Path without extension for the .json and .md reports "
        "(default: <workdir>/evaluation).")


def main(argv):
    del argv
    import json
    from pathlib import Path

    import keras

    import models  # noqa: F401  (registers the zoo)
    from anpvs_tf import config as config_lib
    from anpvs_tf.evaluation import evaluate_model
    from anpvs_tf.evaluation import format_results
    from anpvs_tf.training import load_split
    from anpvs_tf.training import load_trained_model

    keras.utils.set_random_seed(FLAGS.seed)
    trained, model = load_trained_model(FLAGS.workdir)
    config = config_lib.replace(
        trained,
        **{
            "eval.attack.epsilon": (
                trained.attack.epsilon if FLAGS.epsilon is None
                else FLAGS.epsilon
            ),
            "eval.attack.step_size": (
                trained.attack.step_size if FLAGS.pgd_step_size is None
                else FLAGS.pgd_step_size
            ),
            "eval.attack.num_steps": FLAGS.pgd_steps,
            "eval.attack.random_start": FLAGS.random_start,
            "eval.batch_size": FLAGS.batch_size,
            "data.test_examples": FLAGS.test_examples,
            "data.source": FLAGS.data_source or (
                "idx" if FLAGS.data_dir else None),
            "data.data_dir": FLAGS.data_dir,
        },
    )
    images, labels = load_split(config.data, "test")
    results = evaluate_model(model, images, labels, config.eval)
    results.update(
        workdir=str(FLAGS.workdir),
        method=trained.train.method,
        architecture=trained.model.architecture,
        dataset=trained.data.dataset,
        seed=FLAGS.seed,
    )
    output = Path(FLAGS.output or Path(FLAGS.workdir) / "evaluation")
    output.parent.mkdir(parents=True, exist_ok=True)
    table = format_results(results)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2))
    output.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nwritten to {output}.json and {output}.md")


if __name__ == "__main__":
    define_flags()
    app.run(cli.run_main(main))
