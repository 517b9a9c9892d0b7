"""Lab script behind bench/README.md's "Stalled rounds" table: one variant
per process, chosen by environment variables, prints its rounds as
(examples/s, CPU idle fraction).

    SPLIT=0|1 (two logical CPUs)  MODE=fit|raw|iter|nested|iterround
    DSOPT=noautotune|private1     METHOD=anp_vs|at  ROUNDS=8  LABEL=name

    SPLIT=0 MODE=iterround DSOPT=noautotune python bench/stall_variants.py

bench/stalls.py is the committed side-by-side benchmark of the fix.
"""
# flake8: noqa
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
split = os.environ.get("SPLIT", "1") == "1"
from anpvs_tf import cli  # noqa: E402

cli.start()  # before anything imports TensorFlow
import tensorflow as tf  # noqa: E402
if split:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, models  # noqa: E402
from pathlib import Path  # noqa: E402
from anpvs_tf import config as config_lib, data  # noqa: E402
from anpvs_tf.registry import get_experiment  # noqa: E402
from anpvs_tf.assembly import build_model  # noqa: E402

def ticks():
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return f[3] + f[4], sum(f)

method = os.environ.get("METHOD", "anp_vs")
keras.utils.set_random_seed(0)
cfg = config_lib.replace(get_experiment(f"lenet5_caffe_mnist_{method}"), **{"attack.num_steps": 20})
model = build_model(cfg, (28, 28, 1), 10, 5000)
model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2), jit_compile=False)
x, y = data.load_arrays("mnist", "train", "embedded")
ds, _ = data.train_dataset(x, y, 64, seed=0, autotune=True)
opt = os.environ.get("DSOPT")
if opt:
    o = tf.data.Options()
    if opt == "noautotune":
        o.autotune.enabled = False
    elif opt == "private1":
        o.threading.private_threadpool_size = 1
    elif opt == "nointraop":
        o.threading.max_intra_op_parallelism = 1
    ds = ds.with_options(o)
model.fit(ds, epochs=1, steps_per_epoch=5, verbose=0)
raw = os.environ.get("MODE") in ("raw", "iter", "nested", "iterround")
if os.environ.get("MODE") == "nested":
    it = iter(ds)
    inner = tf.function(lambda d: model.train_step(d), reduce_retracing=True)
    step = tf.function(lambda: inner(next(it)), reduce_retracing=True)
    step()
if os.environ.get("MODE") == "iterround":
    stepit = tf.function(lambda it: model.train_step(next(it)))
    stepit(iter(ds))
if os.environ.get("MODE") == "iter":
    it = iter(ds)
    step = tf.function(lambda: model.train_step(next(it)))
    step()
if os.environ.get("MODE") == "raw":
    xb = tf.constant(x[:64]); yb = tf.constant(y[:64])
    step = tf.function(lambda: model.train_step((xb, yb)))
    step()
out = []
for r in range(int(os.environ.get("ROUNDS", "8"))):
    b = ticks(); t = time.perf_counter()
    if os.environ.get("MODE") == "iterround":
        it = iter(ds)
        for _ in range(20):
            logs = stepit(it)
        float(logs["loss"])
    elif raw:
        for _ in range(20):
            logs = step()
        float(logs["loss"])
    else:
        model.fit(ds, epochs=1, steps_per_epoch=20, verbose=0)
    s = time.perf_counter() - t
    i, tot = (bb - a for a, bb in zip(b, ticks()))
    out.append((round(20 * 64 / s, 1), round(i / max(tot, 1), 2)))
print(os.environ.get("LABEL", ""), out, flush=True)
