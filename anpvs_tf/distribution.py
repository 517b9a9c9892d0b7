"""Where training runs: strategies, worker roles, per-replica input.

`--batch_size` is the global batch whatever the number of replicas: every
step averages the loss over the same examples a single device would see,
so the learning rates of a recipe hold unchanged on 1, 2 or 16 replicas
(no linear scaling; tested equal to single-device training).
"""

import functools
import hashlib
import json
import os
import shutil
import tempfile

import tensorflow as tf

from anpvs_tf import data
from anpvs_tf.errors import ConfigError
from anpvs_tf.replicas import is_multi_worker

TF_CONFIG = "TF_CONFIG"
# Task types MultiWorkerMirroredStrategy trains with ("chief" is optional).
_TRAINING_TASKS = ("chief", "worker")


@functools.cache
def make_strategy(name):
    """default: one device; mirrored: all local devices; auto: GPUs if any;
    multi_worker: MultiWorkerMirroredStrategy over the TF_CONFIG cluster.

    One object per name and process: a second MirroredStrategy instance in
    the same process breaks TensorFlow's collectives (seen on CPU), and a
    gated run trains its base model in the same process. multi_worker must
    be made before TensorFlow runs any op (it configures the runtime).
    """
    if name == "multi_worker":
        read_tf_config(os.environ.get(TF_CONFIG))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def read_tf_config(text):
    """Parses and checks TF_CONFIG; raises ConfigError naming the fix.

    TensorFlow's own messages for a bad TF_CONFIG are tracebacks or a hang
    (a worker waits forever for a peer that is not in the cluster).
    """
    example = (
        'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
        '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
    )
    if not text:
        raise ConfigError(
            f"`train.strategy`=multi_worker needs the {TF_CONFIG} environment "
            f"variable (the cluster and this worker's place in it), {example}"
        )
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{TF_CONFIG} is not valid JSON ({err.msg} at character "
            f"{err.pos}); {example}"
        ) from err
    if not isinstance(tf_config, dict):
        raise ConfigError(f"{TF_CONFIG} must be a JSON object; {example}")
    cluster = tf_config.get("cluster")
    if not isinstance(cluster, dict) or not cluster.get("worker"):
        raise ConfigError(
            f"{TF_CONFIG} has no cluster.worker list of host:port "
            f"addresses; {example}"
        )
    for job, addresses in cluster.items():
        if job not in _TRAINING_TASKS:
            raise ConfigError(
                f"{TF_CONFIG} cluster has a '{job}' job; multi_worker "
                f"training uses only {' and '.join(_TRAINING_TASKS)}"
            )
        if not isinstance(addresses, list) or not all(
            isinstance(a, str) and a.rpartition(":")[2].isdigit()
            for a in addresses
        ):
            raise ConfigError(
                f"{TF_CONFIG} cluster.{job} must be a list of 'host:port' "
                f"strings, got {addresses!r}"
            )
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f"{TF_CONFIG} cluster.chief may hold one address")
    task = tf_config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ConfigError(
            f"{TF_CONFIG} task.type must name a job of the cluster "
            f"({', '.join(cluster)}), got {task!r}; {example}"
        )
    index = task.get("index")
    size = len(cluster[task["type"]])
    if isinstance(index, bool) or not isinstance(index, int) or not (
        0 <= index < size
    ):
        raise ConfigError(
            f"{TF_CONFIG} task.index must be 0 to {size - 1} (this "
            f"worker's position in cluster.{task['type']}), got {index!r}"
        )
    return tf_config


def is_chief(strategy):
    """The one process that writes checkpoints, logs and results.

    The chief task when the cluster has one, else worker 0; a single
    process is always the chief.
    """
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and not has_chief
    )


class WorkerPaths:
    """Real paths on the chief, throw-away ones on the other workers.

    Every worker must run the same saving code (a checkpoint save reads
    variables, which may need all workers), but only the chief's files are
    kept: the others write into a temporary folder, removed by `cleanup`.
    The folder is named after the worker and the workdir, so a worker that
    was killed (no cleanup) and restarted reuses and clears its own.
    """

    def __init__(self, strategy, workdir):
        self.chief = is_chief(strategy)
        self._scratch = None
        if not self.chief:
            run = hashlib.sha1(
                os.path.abspath(workdir).encode()
            ).hexdigest()[:12]
            self._scratch = os.path.join(
                tempfile.gettempdir(),
                f"anpvs-worker{strategy.cluster_resolver.task_id}-{run}",
            )
            self.cleanup()
            os.makedirs(self._scratch)

    def __call__(self, path):
        if self.chief:
            return path
        return os.path.join(self._scratch, os.path.basename(path))

    def cleanup(self):
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def check_global_batch(strategy, global_batch_size):
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ConfigError(
            f"`train.batch_size` {global_batch_size} is the global batch and "
            f"must "
            f"split evenly over the {replicas} replicas; use a multiple of "
            f"{replicas}"
        )


def distribute_batches(strategy, dataset, global_batch_size):
    """Gives replica r rows [r*b, (r+1)*b) of every global batch (b = B/R).

    That is the split single-device training implies, and what
    replicas.sample_for_global_batch assumes for the noise, so results do
    not depend on the replica count. Each worker's pipeline keeps only its
    own rows, in replica order; the dataset must yield full global batches.
    """
    if strategy.num_replicas_in_sync == 1:
        return dataset
    check_global_batch(strategy, global_batch_size)

    def worker_dataset(context):
        local = context.get_per_replica_batch_size(global_batch_size)
        local_replicas = (
            context.num_replicas_in_sync // context.num_input_pipelines
        )
        start = context.input_pipeline_id * local_replicas * local
        stop = start + local_replicas * local
        return data.without_autotune(
            dataset.map(lambda *batch: tuple(t[start:stop] for t in batch))
            .rebatch(local)
            .prefetch(data.PREFETCH_BATCHES)
        )

    return strategy.distribute_datasets_from_function(worker_dataset)


@tf.function
def _gather_from_workers(strategy, value):
    # In a tf.function: run eagerly, collectives are slow and warn so.
    return strategy.gather(strategy.run(lambda: tf.identity(value)), axis=0)


def agree_across_workers(strategy, value, what):
    """Checks every worker holds the same int (e.g. the resume epoch).

    Also a barrier: it returns once every worker has reached it. Workers
    that disagree would deadlock or train different models; the usual cause
    is a --workdir that is not on a filesystem shared by all workers.
    """
    if not is_multi_worker(strategy):
        return value
    values = _gather_from_workers(strategy, tf.constant([value], tf.int64))
    values = values.numpy()
    if len(set(values.tolist())) != 1:
        raise ConfigError(
            f"the workers disagree on {what} ({values.tolist()}); every "
            "worker needs the same `workdir` on a filesystem they all share"
        )
    return value
