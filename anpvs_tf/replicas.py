"""Per-replica helpers: random draws that agree between one device and
several replicas, and step logs that Keras can reduce over workers."""

import tensorflow as tf


def sample_for_global_batch(sample_fn, local_batch_size):
    """Draws noise for the whole global batch and returns this replica's rows.

    Every replica's SeedGenerator is in the same state, so a plain draw would
    give all replicas the same noise. Drawing the global batch and slicing
    by replica id gives each example the noise it would get on one device,
    so mirrored training equals single-device training on the same global
    batch (tested). The extra draws are tiny next to the model's work.
    """
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    if replicas == 1:
        return sample_fn(local_batch_size)
    samples = sample_fn(local_batch_size * replicas)
    start = context.replica_id_in_sync_group * local_batch_size
    return samples[start : start + local_batch_size]


def is_multi_worker(strategy):
    """True when the strategy spans several processes."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = resolver.cluster_spec().as_dict()
    return sum(len(tasks) for tasks in spec.values()) > 1


def num_replicas():
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def reducible_logs(logs):
    """Logs of a step in a form Keras can reduce over workers.

    Keras (3.15) reduces each log of a multi-worker step with
    strategy.reduce("MEAN", value, axis=0), which rejects scalars; a
    one-element vector reduces to the scalar mean over replicas. Single
    process logs are returned as they are.
    """
    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
