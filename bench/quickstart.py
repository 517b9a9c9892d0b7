"""The README's main command, as a new user runs it: time and results.

    python bench/quickstart.py

Runs `python train.py --epochs=8 --base_epochs=3` (the README's command)
into a new temporary workdir, so nothing is resumed, and records its wall
time (base model, ANP-VS, final evaluation on the 10k test images), the
machine's load average before and after, and the results it printed.
Writes bench/results/quickstart.{json,md}.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app
from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anpvs_tf import files  # noqa: E402
from anpvs_tf.evaluation.tables import markdown_table  # noqa: E402

# The README's main command, without its --workdir.
COMMAND = ["train.py", "--epochs=8", "--base_epochs=3"]
RESULTS = ("clean_acc", "pgd_acc", "unit_sparsity", "flops_speedup",
           "params")

flags.DEFINE_string("output", "bench/results/quickstart",
                    "Output path without extension.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch) / "quickstart"
        load_before = os.getloadavg()
        start = time.perf_counter()
        subprocess.run([sys.executable, *COMMAND, f"--workdir={workdir}",
                        "--verbose=2"], cwd=ROOT, check=True)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()
        results = json.loads((workdir / "results.json").read_text())
    report = {
        "command": "python " + " ".join(COMMAND),
        "wall_seconds": round(seconds, 1),
        "load_before": load_before, "load_after": load_after,
        "cpu_cores": os.cpu_count(),
        **{key: results[key] for key in RESULTS},
    }
    files.write_json(f"{FLAGS.output}.json", report)
    minutes, rest = divmod(round(seconds), 60)
    lines = [f"`{report['command']}` from a new workdir on "
             f"{report['cpu_cores']} CPU cores (load average before / after: "
             f"{load_before[0]:.2f} / {load_after[0]:.2f}).", ""]
    lines += markdown_table(
        ["wall time", "clean %", "PGD-40 %", "unit sparsity %",
         "FLOPs reduction", "parameters"],
        [[f"{minutes} min {rest} s", f"{100 * results['clean_acc']:.2f}",
          f"{100 * results['pgd_acc']:.2f}",
          f"{results['unit_sparsity']:.2f}",
          f"{results['flops_speedup']:.2f}x", f"{results['params']:,}"]])
    files.write_text(f"{FLAGS.output}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
