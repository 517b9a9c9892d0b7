"""Nothing the user has is lost; nothing silently wrong is reported.

Workdir ownership, atomic files, damaged files, divergence, resume after
a garbled checkpoint index, paths that name the same folder, validation
before anything is created, and the scripts' exit codes and quiet
start-up.
"""

import json
import math
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from anpvs_tf import config as config_lib
from anpvs_tf import data
from anpvs_tf.errors import ConfigError
from anpvs_tf.workdir import NETWORK_FILE
from anpvs_tf.workdir import RESULTS_FILE
from anpvs_tf.workdir import load_trained_model
from anpvs_tf.training import train
from tests.conftest import ROOT
from tests.test_fault_tolerance import interrupt_after_epoch
from tests.test_scripts import assert_one_line_error
from tests.test_scripts import run_script
from tests.tiny_runs import run_config

MODEL = "lenet5_caffe_mnist_at"
MNIST_IDX = ROOT.parent / "shared" / "data" / "mnist"


def quiet(*_):
    pass


def new_module(name):
    """Modules and names this change added, imported per test so that on
    the code before it each test fails on its own."""
    import importlib

    return importlib.import_module(f"anpvs_tf.{name}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished one-epoch AT run (a few seconds)."""
    workdir = tmp_path_factory.mktemp("safety") / "run"
    train(run_config(MODEL, 1), workdir, verbose=0, log=quiet)
    return workdir


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def copy_tree(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


# --- train.py --overwrite deletes only what train.py wrote ---------------

def test_overwrite_refuses_a_folder_with_a_foreign_config_and_files(
    tmp_path
):
    workdir = tmp_path / "d"
    (workdir / "src").mkdir(parents=True)
    (workdir / "src" / "important.py").write_text("x\n")
    (workdir / "config.json").write_text('{"name": "other"}')
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="nothing was changed") as error:
            train(run_config(MODEL, 1), workdir, overwrite=overwrite,
                  verbose=0, log=quiet)
        assert "--overwrite" not in str(error.value)
    assert (workdir / "src" / "important.py").read_text() == "x\n"
    assert (workdir / "config.json").read_text() == '{"name": "other"}'


def test_overwrite_of_a_real_run_with_a_foreign_file_deletes_nothing(
    tmp_path, trained
):
    workdir = copy_tree(trained, tmp_path / "run")
    (workdir / "notes.txt").write_text("mine\n")
    before = listing(workdir)
    changed = run_config(MODEL, 2)
    with pytest.raises(ConfigError, match="notes.txt"):
        train(changed, workdir, overwrite=True, verbose=0, log=quiet)
    assert listing(workdir) == before


def test_refusal_says_what_overwrite_deletes_and_overwrite_deletes_it(
    tmp_path, trained
):
    workdir = copy_tree(trained, tmp_path / "run")
    changed = run_config(MODEL, 1, **{"train.seed": 7})
    with pytest.raises(ConfigError) as error:
        train(changed, workdir, verbose=0, log=quiet)
    assert "`overwrite` to delete that run (its checkpoints" in str(
        error.value)
    old_weights = (workdir / NETWORK_FILE).read_bytes()
    results = train(changed, workdir, overwrite=True, verbose=0, log=quiet)
    assert results["epochs"] == 1
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["train"]["seed"] == 7
    assert (workdir / NETWORK_FILE).read_bytes() != old_weights


def test_a_non_empty_folder_without_a_run_is_not_written_into(tmp_path):
    (tmp_path / "thesis.tex").write_text("draft\n")
    with pytest.raises(ConfigError, match="thesis.tex"):
        train(run_config(MODEL, 1), tmp_path, verbose=0, log=quiet)
    assert listing(tmp_path) == ["thesis.tex"]


# --- atomic files and damaged files ---------------------------------------

def test_a_write_killed_before_the_rename_keeps_the_old_file(
    tmp_path, monkeypatch
):
    path = tmp_path / "results.json"
    files = new_module("files")
    files.write_json(path, {"pgd_acc": 0.5})

    def killed(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        files.write_json(path, {"pgd_acc": 0.9, "more": list(range(1000))})
    assert json.loads(path.read_text()) == {"pgd_acc": 0.5}
    assert listing(tmp_path) == ["results.json"]  # no temporary left


@pytest.mark.parametrize("name", ["config.json", RESULTS_FILE])
def test_a_truncated_file_is_a_one_line_error_that_says_how_to_recover(
    tmp_path, trained, name
):
    workdir = copy_tree(trained, tmp_path / "run")
    path = workdir / name
    path.write_text(path.read_text()[:40])
    files = new_module("files")
    with pytest.raises(files.DamagedFileError) as error:
        train(run_config(MODEL, 1), workdir, verbose=0, log=quiet)
    message = str(error.value)
    assert name in message and "damaged" in message
    assert "\n" not in message and ("delete" in message
                                    or "restore" in message)


def test_a_corrupt_weights_file_is_a_damaged_file_error(tmp_path, trained):
    workdir = copy_tree(trained, tmp_path / "run")
    weights = workdir / NETWORK_FILE
    weights.write_bytes(weights.read_bytes()[:300])
    files = new_module("files")
    with pytest.raises(files.DamagedFileError, match=NETWORK_FILE):
        load_trained_model(workdir)


def test_evaluate_checks_that_the_report_can_be_written_first(
    tmp_path, trained
):
    """The report's folder lies under a file: refused before any attack
    runs (in seconds), not after the whole evaluation."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = run_script("evaluate.py", f"--workdir={trained}",
                        f"--output={blocker / 'report'}", "--suite=paper",
                        "--test_examples=8", "--pgd_steps=1")
    assert_one_line_error(result, "cannot write the report", "--output")
    assert result.returncode == 2
    assert "clean" not in result.stdout  # no attack ran


# --- divergence -------------------------------------------------------------

def test_a_run_that_turns_to_nan_stops_and_writes_no_result(tmp_path):
    # Valid, but Adam's steps of about 1e30 overflow the logits at once.
    config = run_config(MODEL, 2, **{"train.weight_learning_rate": 1e30})
    guards = new_module("guards")
    with pytest.raises(guards.UnusableNetworkError,
                       match="diverged in epoch 1"):
        train(config, tmp_path / "run", verbose=0, log=quiet)
    left = listing(tmp_path / "run")
    assert NETWORK_FILE not in left and RESULTS_FILE not in left
    assert not any(name.startswith("checkpoints/ckpt") for name in left)


def test_evaluation_and_export_refuse_non_finite_weights(tmp_path, trained):
    workdir = copy_tree(trained, tmp_path / "run")
    _, model = load_trained_model(workdir)
    kernel = model.network.get_layer("fc1").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    model.network.save_weights(workdir / NETWORK_FILE)
    guards = new_module("guards")
    with pytest.raises(guards.UnusableNetworkError,
                       match="non-finite weights"):
        load_trained_model(workdir)


@pytest.mark.parametrize("key, value", [
    ("train.weight_learning_rate", math.nan),
    ("train.weight_learning_rate", -0.001),
    ("train.gate_learning_rate", math.inf),
    ("train.fine_tune_learning_rate", math.nan),
    ("train.freeze_at_sparsity", -5.0),
    ("train.base_learning_rate", -0.003),
    ("loss.kl_flops_exponent", math.inf),
    ("model.gate_concentration1_init", math.nan),
    ("loss.kl_normalizer", -1),
    ("loss.kl_weight", math.nan),
    ("loss.vs_weight", -1.0),
    ("loss.trades_weight", math.inf),
    ("attack.step_size", math.inf),
    ("eval.batch_size", 0),
    ("train.seed", -1),
])
def test_every_float_setting_is_checked_for_nan_inf_and_sign(key, value):
    with pytest.raises(ConfigError, match="must be"):
        config_lib.replace(run_config(MODEL, 1), **{key: value})


# --- resume: garbled checkpoint index, history rows ------------------------

def history_epochs(workdir):
    lines = (workdir / "history.csv").read_text().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]]


@pytest.fixture(scope="module")
def interrupted_after_two_epochs(tmp_path_factory):
    """A 3-epoch run killed once epoch 2 is saved; tests damage copies."""
    workdir = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train(run_config(MODEL, 3), workdir, verbose=0, log=quiet)
    return workdir


@pytest.mark.parametrize("damage", ["index", "latest"])
def test_resume_after_a_damaged_index_or_checkpoint_repeats_no_rows(
    tmp_path, interrupted_after_two_epochs, damage
):
    """A garbled `checkpoint` index resumes from the newest ckpt file
    (not from epoch 0); a damaged newest ckpt falls back one epoch. Either
    way history.csv lists every epoch once."""
    workdir = copy_tree(interrupted_after_two_epochs, tmp_path / "run")
    checkpoints = workdir / "checkpoints"
    if damage == "index":
        (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ck')
    else:
        latest = checkpoints / "ckpt-2.data-00000-of-00001"
        latest.write_bytes(latest.read_bytes()[:1000])
    logs = []
    train(run_config(MODEL, 3), workdir, verbose=0, log=logs.append)
    resumed = [line for line in logs if line.startswith("Resuming from")]
    expected = "ckpt-2 (epoch 2" if damage == "index" else "ckpt-1 (epoch 1"
    assert resumed and expected in resumed[0], logs
    assert history_epochs(workdir) == [0, 1, 2]


# --- the same folder spelled differently -----------------------------------

@pytest.mark.skipif(not MNIST_IDX.is_dir(), reason="needs ../shared/data")
def test_the_same_data_folder_spelled_differently_is_the_same_run(
    tmp_path, monkeypatch
):
    def config(data_dir):
        return run_config(MODEL, 1, **{"data.source": "idx",
                                       "data.data_dir": data_dir})

    workdir = tmp_path / "run"
    train(config(str(MNIST_IDX)), workdir, verbose=0, log=quiet)
    link = tmp_path / "mnist_link"
    link.symlink_to(MNIST_IDX)
    monkeypatch.chdir(MNIST_IDX.parent)
    for spelling in (f"{MNIST_IDX}/", str(link), "mnist", "./mnist/"):
        logs = []
        train(config(spelling), workdir, verbose=0, log=logs.append)
        assert any("already trained" in line for line in logs), spelling


# --- checked before anything is created ------------------------------------

def test_a_missing_base_workdir_leaves_nothing_behind(tmp_path):
    config = run_config("lenet5_caffe_mnist_anp_vs", 1, **{
        "train.base_workdir": str(tmp_path / "nonexistent")})
    with pytest.raises(ConfigError, match="does not exist"):
        train(config, tmp_path / "run", verbose=0, log=quiet)
    assert not (tmp_path / "run").exists()


def test_a_stub_of_a_failed_start_does_not_block_the_fixed_command(tmp_path):
    """A workdir with a config but no trained epoch holds nothing to lose:
    the corrected command replaces it instead of asking for --overwrite."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    stub = run_config(MODEL, 1, **{"train.seed": 3})
    (workdir / "config.json").write_text(stub.to_json())
    results = train(run_config(MODEL, 1), workdir, verbose=0, log=quiet)
    assert results["epochs"] == 1


@pytest.mark.parametrize("overrides, phrase", [
    ({"train.method": "standard", "train.base_workdir": "x"},
     "`train.base_workdir` is only read"),
    ({"data.source": "embedded", "data.data_dir": "x"},
     "`data.data_dir` is not read"),
    ({"train.method": "anp_vs", "train.gate_epochs": 5},
     "`train.gate_epochs`=5"),
    ({"train.gate_epochs": 1}, "only applies to gated methods"),
])
def test_conflicting_settings_are_refused(overrides, phrase):
    with pytest.raises(ConfigError, match=phrase):
        config_lib.replace(run_config(MODEL, 1), **overrides)


# --- tfds offline -------------------------------------------------------------

def test_missing_tfds_data_offline_is_an_error_at_once(tmp_path,
                                                        monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    outcome = {}

    def load():
        try:
            data.load_arrays("cifar10", "test", "tfds", str(tmp_path))
        except data.DataError as error:
            outcome["error"] = str(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert "error" in outcome, "tfds was still trying after 30 s"
    assert "not prepared" in outcome["error"]
    assert "`data.data_dir`" in outcome["error"]
    assert list(tmp_path.iterdir()) == []


# --- the scripts: exit codes, positional arguments, quiet start-up ----------

def quiet_run(*args):
    """A script run as a user runs it: TensorFlow's log level not set."""
    env = {k: v for k, v in os.environ.items()
           if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_an_unknown_flag_exits_2_with_one_quiet_line():
    result = quiet_run(str(ROOT / "train.py"), "--epoch=3")
    assert result.returncode == 2
    # Nothing but the error: no oneDNN / CUDA / cuInit start-up banners.
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines()
        if line.startswith("error:")] != []
    assert "epoch" in result.stderr


def test_a_positional_argument_is_an_error_that_names_the_flag(
    tmp_path, capsys
):
    """`python train.py runs/c4`: what absl leaves in argv is refused
    before main runs (in-process: the same wrapper every script uses)."""
    from anpvs_tf import cli

    def main(argv):
        raise AssertionError("main ran")

    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(main)(["train.py", str(tmp_path / "c4")])
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and "unexpected argument" in errors[0]
    assert f"--workdir={tmp_path / 'c4'}" in errors[0]
    assert not (tmp_path / "c4").exists()


def test_quiet_start_up_keeps_the_errors_of_a_failed_import(tmp_path):
    """The start-up redirect hides banners, not failures: an import that
    fails still shows its traceback."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "import sys\nsys.stderr.write('broken install\\n')\n"
        "raise ImportError('no tensorflow here')\n")
    env = {k: v for k, v in os.environ.items()
           if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    result = subprocess.run([sys.executable, "-c",
                             "import anpvs_tf.cli; anpvs_tf.cli.start()"],
                            capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode != 0
    assert "broken install" in result.stderr
    assert "no tensorflow here" in result.stderr


def stand_in_tensorflow(tmp_path, body, unset=("TF_CPP_MIN_LOG_LEVEL",)):
    """The environment of a process whose `import tensorflow` runs `body`
    (with get_logger, which start() calls), the variables `unset` gone."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "import logging, os\n" + body
        + "def get_logger():\n    return logging.getLogger('stand-in')\n")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    return env


def test_start_up_banners_stay_hidden_in_a_quiet_scripts_children(
        tmp_path):
    """TensorFlow writes its start-up banners to file descriptor 2 before
    any log level is read. A script started by a quiet one (quickstart's
    train.py) inherits TF_CPP_MIN_LOG_LEVEL=3 and must hide them as well;
    a user's lower level shows them."""
    env = stand_in_tensorflow(
        tmp_path,
        "os.write(2, b'I0000 port.cc:153] oneDNN custom operations\\n')\n")
    shown = {}
    for level in (None, "3", "0"):
        run_env = env if level is None else {
            **env, "TF_CPP_MIN_LOG_LEVEL": level}
        result = subprocess.run(
            [sys.executable, "-c",
             "import anpvs_tf.cli; anpvs_tf.cli.start()"],
            capture_output=True, text=True, env=run_env, timeout=120)
        assert result.returncode == 0, result.stderr
        shown[level] = "oneDNN" in result.stderr
    assert shown == {None: False, "3": False, "0": True}


def test_start_turns_onednn_on_unless_the_user_chose(tmp_path):
    """TensorFlow turns its oneDNN kernels on by itself only on CPUs with
    AVX-512 VNNI or newer; start() asks for them before the import (what
    the stand-in TensorFlow sees), and a user's TF_ENABLE_ONEDNN_OPTS
    wins."""
    env = stand_in_tensorflow(
        tmp_path, "SEEN = os.environ.get('TF_ENABLE_ONEDNN_OPTS')\n",
        unset=("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"))
    code = ("import anpvs_tf.cli; anpvs_tf.cli.start(); "
            "import tensorflow; print(tensorflow.SEEN)")
    seen = {}
    for chosen in (None, "0"):
        run_env = env if chosen is None else {
            **env, "TF_ENABLE_ONEDNN_OPTS": chosen}
        result = subprocess.run([sys.executable, "-c", code],
                                capture_output=True, text=True,
                                env=run_env, timeout=120)
        assert result.returncode == 0, result.stderr
        seen[chosen] = result.stdout.strip()
    assert seen == {None: "1", "0": "0"}


def test_history_log_drops_torn_and_repeated_rows(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.4\n3,0.")
    log = new_module("callbacks").HistoryLog(path, initial_epoch=2)
    log.on_epoch_end(2, {"loss": 0.25})
    assert path.read_text() == "epoch,loss\n0,1.0\n1,0.5\n2,0.25\n"


def test_guard_names_the_epoch_and_the_cause():
    guards = new_module("guards")
    with pytest.raises(guards.UnusableNetworkError,
                       match="epoch 4: its loss"):
        guards.DivergenceGuard().on_epoch_end(3, {"loss": math.nan, "acc": 0.1})


def test_holds_run_tells_a_resumable_run_from_another(tmp_path, trained):
    """What tune.py asks before it retrains a (possibly new) best trial
    into best/: the same run is reused, another one replaced."""
    from anpvs_tf.workdir import holds_run

    assert holds_run(run_config(MODEL, 1), trained)
    assert not holds_run(run_config(MODEL, 1, **{"train.seed": 5}), trained)
    assert not holds_run(run_config(MODEL, 1), tmp_path / "missing")


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_flag_is_an_error(value):
    from anpvs_tf import cli

    with pytest.raises(ConfigError, match="`workdir` is empty"):
        cli.check_not_empty(workdir=value, data_dir=None)
    cli.check_not_empty(workdir="runs/x", data_dir=None)  # fine


def test_an_atomic_write_gets_the_mode_of_a_plain_one(tmp_path):
    files = new_module("files")
    plain, atomic = tmp_path / "plain.json", tmp_path / "atomic.json"
    plain.write_text("{}")
    files.write_json(atomic, {})
    assert atomic.stat().st_mode == plain.stat().st_mode
    os.chmod(atomic, 0o640)  # a mode the user chose is kept on rewrite
    files.write_json(atomic, {"a": 1})
    assert atomic.stat().st_mode & 0o777 == 0o640


def test_overwrite_refuses_a_foreign_file_inside_an_owned_folder(
    tmp_path, trained
):
    """base/, export/ and the black-box sources are checked all the way
    down: a user's file in them blocks --overwrite too."""
    workdir = copy_tree(trained, tmp_path / "run")
    (workdir / "export").mkdir()
    (workdir / "export" / "deploy.sh").write_text("mine\n")
    before = listing(workdir)
    with pytest.raises(ConfigError, match="export/deploy.sh"):
        train(run_config(MODEL, 2), workdir, overwrite=True, verbose=0,
              log=quiet)
    assert listing(workdir) == before
