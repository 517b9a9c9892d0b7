"""Starting train.py processes in tests: bounded in time, always reaped."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT


def free_port():
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def tf_configs(num_workers):
    """One TF_CONFIG per worker of a cluster on fresh localhost ports."""
    cluster = {"worker": [f"localhost:{free_port()}"
                          for _ in range(num_workers)]}
    return [
        json.dumps({"cluster": cluster,
                    "task": {"type": "worker", "index": index}})
        for index in range(num_workers)
    ]


class TrainProcess:
    """train.py in a subprocess, its output in a file (no pipe to fill)."""

    def __init__(self, args, log_path, env=None):
        self.log_path = log_path
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        environment.pop("TF_CONFIG", None)
        environment.update(env or {})
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "train.py"), *args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                env=environment,
            )

    @property
    def output(self):
        return self.log_path.read_text()

    def wait(self, deadline):
        """Exit code, or None when still running at `deadline`."""
        try:
            return self.process.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def train_processes(runs, timeout):
    """Starts train.py once per (args, log_path, env); kills what is left.

    Yields (processes, deadline); whatever happens in the block, every
    process is killed and reaped on exit.
    """
    deadline = time.time() + timeout
    processes = []
    try:
        for args, log_path, env in runs:
            processes.append(TrainProcess(args, log_path, env))
        yield processes, deadline
    finally:
        for process in processes:
            process.kill()


def wait_all(processes, deadline):
    """Exit codes of all processes; fails the test on the deadline."""
    codes = [process.wait(deadline) for process in processes]
    if None in codes:
        outputs = "\n---\n".join(p.output[-3000:] for p in processes)
        raise AssertionError(f"train.py did not finish in time:\n{outputs}")
    return codes


def wait_for_checkpoint(workdir, processes, deadline, min_epoch=1):
    """Waits until `workdir` holds a checkpoint of epoch >= min_epoch."""
    state = workdir / "checkpoints" / "checkpoint"
    while time.time() < deadline:
        if state.exists():
            text = state.read_text()
            epochs = [int(line.rsplit("-", 1)[1].rstrip('"'))
                      for line in text.splitlines()
                      if line.startswith("model_checkpoint_path")]
            if epochs and max(epochs) >= min_epoch:
                return max(epochs)
        if any(p.process.poll() is not None for p in processes):
            outputs = "\n---\n".join(p.output[-3000:] for p in processes)
            raise AssertionError(f"train.py ended before a checkpoint:\n"
                                 f"{outputs}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint before the deadline")
