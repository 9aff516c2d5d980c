"""Where training runs: the `tf.distribute` strategy, seeds and precision.

`choose_strategy` turns `--strategy` (auto | cpu | mirrored | multiworker | tpu)
into a strategy; the model is then built and compiled inside its scope
(`textrnn.training.fit`). Multi-worker jobs read TF_CONFIG or build it from
`--worker-hosts` / `--task-index`.
"""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

from textrnn.errors import ConfigError, UserError

logger = logging.getLogger(__name__)


def split_cpu(devices: int) -> bool:
    """Split the CPU into `devices` logical devices (MirroredStrategy replicas on a CPU-only host).

    Only possible before TensorFlow initializes its runtime; returns whether it worked.
    `textrnn` does it at start-up when TEXTRNN_CPU_DEVICES is set.
    """
    cpus = tf.config.list_physical_devices("CPU")
    if len(tf.config.list_logical_devices("CPU")) >= devices:
        return True
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * devices
        )
    except RuntimeError:
        return False
    return True


def worker_tf_config(worker_hosts: str, task_index: int) -> str:
    """TF_CONFIG for worker `task_index` of `host:port,host:port,...` (multi-worker training)."""
    hosts = [host.strip() for host in worker_hosts.split(",") if host.strip()]
    if not hosts or any(":" not in host for host in hosts):
        raise ConfigError(f"--worker-hosts must be host:port,host:port,..., got {worker_hosts!r}")
    if not 0 <= task_index < len(hosts):
        raise ConfigError(
            f"--task-index must be in [0, {len(hosts) - 1}] for {len(hosts)} worker(s), "
            f"got {task_index}"
        )
    return json.dumps(
        {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": task_index}}
    )


def choose_strategy(
    name: str = "auto", tpu: str = "", worker_hosts: str = "", task_index: int = 0
) -> tf.distribute.Strategy:
    """`auto`: a TPU if a resolver finds one, MirroredStrategy on >1 GPU, else the default.

    `mirrored` uses every local GPU, or every logical CPU device when there is
    no GPU (see `split_cpu`). `multiworker` reads TF_CONFIG, or builds it from
    `worker_hosts` / `task_index`. `tpu` connects through a TPUClusterResolver.
    """
    if name == "tpu" or (name == "auto" and (tpu or os.environ.get("TPU_NAME"))):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except Exception as error:  # noqa: BLE001 - resolvers raise ValueError, OpError, URLError...
            if name == "tpu":
                raise UserError(f"no TPU found (--tpu {tpu or '<unset>'}): {error}") from None
    if name == "multiworker":
        if worker_hosts:
            os.environ["TF_CONFIG"] = worker_tf_config(worker_hosts, task_index)
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "--strategy multiworker needs TF_CONFIG or "
                "--worker-hosts HOST:PORT,... --task-index N "
                "(see README, 'Scaling out')"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise UserError(f"TF_CONFIG is not valid JSON ({error})") from None
        patch_keras_multi_worker_reduce()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1 and not gpus:
            logger.warning(
                "--strategy mirrored: one device only; "
                "set TEXTRNN_CPU_DEVICES=2 to split the CPU into replicas"
            )
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def patch_keras_multi_worker_reduce() -> None:
    """Work around keras 3.15 under MultiWorkerMirroredStrategy: it reduces scalar metrics with
    `strategy.reduce("MEAN", v, axis=0)`, which fails ("Invalid reduction dimension 0"); scalars
    are reduced with `axis=None` here, everything else as Keras does. Idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer.reduce_per_replica, "textrnn_patched", False):
        return
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def reduce(value):
                if not tf_trainer._is_per_replica_instance(value):
                    return value
                rank = strategy.experimental_local_results(value)[0].shape.rank
                return strategy.reduce("MEAN", value, axis=0 if rank else None)

            return tf.nest.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica.textrnn_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make CPU kernels deterministic.

    `deterministic=False` (XLA requested) turns op determinism off again:
    Keras silently drops `jit_compile=True` while it is on.
    """
    keras.utils.set_random_seed(seed)
    from tensorflow.python.framework import config as tf_config

    if deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def set_precision(policy: str) -> None:
    """Set the Keras dtype policy; output layers stay float32 (`dtype="float32"`).

    Must run before the model is built. Under `mixed_float16` `model.compile`
    wraps the optimizer in a `LossScaleOptimizer` (dynamic loss scaling).
    """
    keras.mixed_precision.set_global_policy(policy or "float32")


def resolve_precision(policy: str, strategy: tf.distribute.Strategy) -> str:
    """The policy to train with: as configured; on a TPU `mixed_bfloat16` unless set."""
    if not policy and isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if policy == "mixed_float16" and not tf.config.list_logical_devices("GPU"):
        logger.warning(
            "mixed_float16 without a GPU is slow; mixed_bfloat16 is the CPU / TPU choice"
        )
    return policy
