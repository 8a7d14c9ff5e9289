"""The one trainer every method uses.

`train(method, config, workdir)` builds the method's model and optimizer inside a
tf.distribute strategy, resumes from the newest readable checkpoint of the workdir (step,
weights, optimizer state, learning-rate schedule, curriculum stage, data position and
dropout RNG state), then runs `model.train_step` replica-wise on the method's input
pipeline, logging to TensorBoard, `metrics.jsonl` and the console, validating and
checkpointing at intervals. A step with a non-finite loss is skipped and logged; after
`max_nonfinite_steps` of them the run stops, leaving the last good checkpoint. Unreadable
records are logged by shard and counted; data that gives no example, or is mostly
unreadable, stops the run with the reason (`InputStoppedError`). SIGTERM or SIGINT
(Ctrl-C) stops a one-machine run at the next step boundary with a checkpoint.
"""

import math
import os
import signal
import threading

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfvssl.data import pipeline, records
from tfvssl.train import checkpoint, optim, reporting
from tfvssl.train import strategy as strategies
from tfvssl.workdir import CKPT_DIR


class NonFiniteLossError(RuntimeError):
    """Raised when too many steps had a non-finite loss."""


class Interrupted(Exception):
    """Raised when a stop signal ended the run after saving a checkpoint; `signum` is the
    signal's number."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """Turns SIGTERM and SIGINT into a request to stop at the next step boundary.

    A preemption (SIGTERM) or Ctrl-C then costs no work: the trainer saves a checkpoint
    and stops. A second signal acts as without this handler (Ctrl-C twice interrupts at
    once). Only the main thread can take signals; elsewhere nothing is installed.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self.previous = {}

    def install(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum, frame):
        del frame
        self.received = signum
        signal.signal(signum, self.previous[signum])


class InputStoppedError(RuntimeError):
    """Raised when the input pipeline stops: no example comes, or the data is mostly unreadable."""


class DataPosition:
    """Tracks the consumed stream position of each input pipeline and counts the records
    that gave no example: unreadable, too short for the recipe, undecodable.

    Elements carry `(pipeline, epoch, offset, corrupt, too short, undecodable, cut shard,
    cut byte)` (`pipeline.training_dataset`), the three counts being each pipeline's totals
    since it started.
    """

    # The counted causes, in the order of the position's columns 3-5.
    CAUSES = ("corrupt", "too_short", "undecodable")

    def __init__(self, num_pipelines):
        # [pipeline] -> (epoch, offset of the last consumed record); checkpointed.
        self.variable = tf.Variable(
            np.tile(np.array([[0, -1]], np.int64), (num_pipelines, 1)), trainable=False, name="data_position"
        )
        # Checkpointed totals: all skipped records, and per cause.
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_records")
        self.counts = {
            cause: tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{cause}_records") for cause in self.CAUSES
        }
        self._seen = {}  # [pipeline] -> its totals already counted.

    def start(self, pipeline_index):
        """`(epoch, offset)` where pipeline `pipeline_index` resumes."""
        position = self.variable.numpy()
        if pipeline_index >= len(position):  # Resumed with more pipelines: start afresh.
            return 0, 0
        epoch, offset = position[pipeline_index]
        return int(epoch), int(offset) + 1

    def consume(self, positions):
        """Advances with the `[B, 8]` positions of a batch.

        Returns:
          `(new, cut)`: `{cause: records newly counted}` and the last cut among the newly
          unreadable ones, `(shard index, byte)` (None when there are none).
        """
        state = self.variable.numpy().copy()
        new, cut = dict.fromkeys(self.CAUSES, 0), None
        for pipeline_index, epoch, offset, *totals, cut_shard, cut_at in sorted(map(tuple, positions)):
            if pipeline_index >= len(state):
                continue
            state[pipeline_index] = (epoch, offset)
            seen = self._seen.get(pipeline_index, (0,) * len(self.CAUSES))
            for cause, total, counted in zip(self.CAUSES, totals, seen):
                new[cause] += max(total - counted, 0)
            if totals[0] > seen[0]:
                cut = (cut_shard, cut_at)
            self._seen[pipeline_index] = tuple(max(a, b) for a, b in zip(totals, seen))
        self.variable.assign(state)
        if new["too_short"] or new["undecodable"]:
            self.skipped.assign_add(new["too_short"] + new["undecodable"])
        for cause, count in new.items():
            if count:
                self.counts[cause].assign_add(count)
        return new, cut

    def metrics(self):
        """The totals as the metrics report them."""
        return {
            "skipped_videos": float(self.skipped.numpy()),
            "too_short_videos": float(self.counts["too_short"].numpy()),
            "undecodable_videos": float(self.counts["undecodable"].numpy()),
            "corrupt_records": float(self.counts["corrupt"].numpy()),
        }


def _seed_generator_states(model):
    """The RNG state variables of the model's dropout layers, so resumes replay them."""
    return {
        f"seed_{index}": variable.value
        for index, variable in enumerate(v for v in model.variables if "seed_generator_state" in v.path)
    }


def _global_batch_size(config, strategy):
    if config.per_replica_batch_size:
        return config.per_replica_batch_size * strategy.num_replicas_in_sync
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"--batch_size={config.batch_size}: not divisible by {strategy.num_replicas_in_sync} replicas"
        )
    return config.batch_size


def in_steps(epochs, videos, global_batch):
    """Steps of `global_batch` clips that make `epochs` passes over `videos` videos (at least 1)."""
    return max(1, math.ceil(epochs * videos / global_batch))


def resolve_epochs(config, files, global_batch):
    """Sets the step settings given in epochs: `train_steps` from `train_epochs`,
    `lr_decay_steps` from `lr_decay_at_epochs`, `val_every` from `val_every_epochs` (epochs
    of the videos in `files`), and `val_batches` from `val_videos`, for `global_batch`."""
    if config.val_videos:
        config.val_batches = math.ceil(config.val_videos / global_batch)
    if config.train_epochs is None and not config.lr_decay_at_epochs and config.val_every_epochs is None:
        return
    videos = records.count_videos(files)
    if config.train_epochs is not None:
        config.train_steps = in_steps(config.train_epochs, videos, global_batch)
        logging.info(
            "%g epochs of %d videos at a global batch of %d: %d steps",
            config.train_epochs, videos, global_batch, config.train_steps,
        )
    if config.lr_decay_at_epochs:
        config.lr_decay_steps = [in_steps(epoch, videos, global_batch) for epoch in config.lr_decay_at_epochs]
    if config.val_every_epochs is not None:
        config.val_every = in_steps(config.val_every_epochs, videos, global_batch)


def _build(model, method, element_spec):
    """Creates every variable by one pass of the pretext computation on zeros."""
    # A size the spec leaves open (windows of a planned resize) can be anything: 1.
    dummy = {
        name: tf.zeros([2, *(size or 1 for size in spec.shape[1:])], spec.dtype)
        for name, spec in element_spec.items()
        if name != "position"
    }
    model.compute_pretext(method.batch_augment(dummy), training=False)


def make_validation_step(model, method, strategy):
    """A tf.function running `model.test_step` on every replica, averaged."""

    def replica_step(batch):
        return model.test_step(method.batch_augment(batch))

    @tf.function
    def validation_step(batch):
        batch = {name: value for name, value in batch.items() if name != "position"}
        logs = strategy.run(replica_step, args=(batch,))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    return validation_step


def validate(validation_step, dataset):
    """Mean of the validation step's outputs over the batches of `dataset`."""
    totals, count = {}, 0
    for batch in dataset:
        for name, value in validation_step(batch).items():
            totals[name] = totals.get(name, 0.0) + float(value)
        count += 1
    return {name: value / count for name, value in totals.items()} if count else {}


def train(method, config, workdir, strategy=None):
    """Pretrains `method` with `config`, writing into `workdir`; returns the final logs.

    Args:
      method: a `tfvssl.methods.Method`, already validated.
      config: the resolved configuration (`tfvssl.train.train_flags.resolve_config`).
      workdir: output directory (`ckpt/`, `tensorboard/`, `metrics.jsonl`).
      strategy: a tf.distribute strategy (default: from `config.strategy`).
    """
    strategy = strategy or strategies.make_strategy(config.strategy)
    strategies.describe(strategy)
    if config.jit_compile and strategy.num_replicas_in_sync > 1 and (
        config.negatives == "global" or config.sync_bn
    ):
        # tf.distribute cannot put cross-replica collectives inside an XLA cluster.
        raise ValueError(
            "--jit_compile: not supported together with --negatives=global or --sync_bn on "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    chief = strategies.is_chief(strategy)
    if chief:
        os.makedirs(workdir, exist_ok=True)
    files = records.list_shards(config.data, config.split)
    global_batch = _global_batch_size(config, strategy)
    resolve_epochs(config, files, global_batch)
    num_pipelines = strategies.num_workers(strategy)

    keras.mixed_precision.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        model = method.build_model()
        optimizer = optim.make_optimizer(config)
        model.compile(optimizer=optimizer, jit_compile=False)
        model.xla_gradients = config.jit_compile
        model.grad_clip_norm = config.grad_clip_norm
        probe = pipeline.training_dataset(files, method, 2, seed=config.seed, shuffle_buffer=1)
        _build(model, method, probe.element_spec)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="curriculum_stage")
        position = DataPosition(num_pipelines)
    schedule = optim.LearningRateSchedule(config, optimizer)
    checkpointer = checkpoint.Checkpointer(
        os.path.join(workdir, CKPT_DIR), keep=config.keep_checkpoints, is_chief=chief,
        # Checkpoints of runs before the counts by cause existed still resume.
        optional=tuple(f"{cause}_records" for cause in position.CAUSES), model=model, optimizer=optimizer,
        step=step, curriculum_stage=stage, data_position=position.variable, skipped_records=position.skipped,
        **{f"{cause}_records": count for cause, count in position.counts.items()},
        schedule=schedule.state(), rng=_seed_generator_states(model),
    )
    resumed = checkpointer.restore_latest()
    if resumed:
        logging.info("resumed from %s at step %d", resumed, int(step.numpy()))
    elif config.init_from:
        checkpoint.load_weights(model, config.init_from)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    logging.info("%s: %s trainable parameters", method.name, f"{params:,}")

    def dataset_fn(context):
        start_epoch, start_offset = position.start(context.input_pipeline_id)
        return pipeline.training_dataset(
            files, method, context.get_per_replica_batch_size(global_batch), seed=config.seed,
            start_epoch=start_epoch, start_offset=start_offset,
            pipeline_index=context.input_pipeline_id, num_pipelines=context.num_input_pipelines,
            shuffle_buffer=config.shuffle_buffer, deterministic=config.deterministic,
            max_corrupt_fraction=config.max_corrupt_fraction,
            max_records_without_example=config.max_records_without_example,
        )

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    val_dataset = _validation_dataset(config, method, files, global_batch)
    if val_dataset is not None:
        val_dataset = strategy.experimental_distribute_dataset(val_dataset)
        validation_step = make_validation_step(model, method, strategy)

    def replica_step(batch):
        return model.train_step(method.batch_augment(batch))

    def make_train_step():
        @tf.function
        def train_step(iterator):
            batch = next(iterator)
            positions = strategy.gather(batch.pop("position"), axis=0)
            logs = strategy.run(replica_step, args=(batch,))
            logs = {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}
            return logs, positions

        return train_step

    current = int(step.numpy())
    writer = reporting.MetricWriter(workdir, enabled=chief, start_step=current)
    clock = reporting.Clock(config.train_steps, current)
    val_every = config.val_every or config.checkpoint_every
    nonfinite = 0
    train_step, traced_stage = None, None
    interval = {}
    logs = {}
    stop = StopSignals()
    # On several machines a signal reaches one worker, whose save (a collective) would wait
    # for the others forever: there, the signals keep their default effect.
    if num_pipelines == 1:
        stop.install()
    try:
        while current < config.train_steps:
            wanted = method.curriculum_stage(current)
            if wanted != traced_stage:
                method.set_curriculum_stage(model, wanted)
                stage.assign(wanted)
                train_step, traced_stage = make_train_step(), wanted
                logging.info("curriculum stage %d from step %d", wanted, current)
            lr = schedule.update(current)
            logs, positions = train_step(iterator)
            current = int(step.assign_add(1).numpy())
            clock.tick(current)
            new, cut = position.consume(positions.numpy())
            if new["too_short"] or new["undecodable"]:
                totals = position.metrics()
                skipped = [
                    f"{new[cause]} video(s) {reason}" for cause, reason in
                    (("too_short", "too short for the recipe"), ("undecodable", "that failed to decode")) if new[cause]
                ]
                logging.warning(
                    "step %d: skipped %s (%d too short and %d undecodable so far)", current, " and ".join(skipped),
                    totals["too_short_videos"], totals["undecodable_videos"],
                )
            if new["corrupt"]:
                totals = position.metrics()
                logging.warning(
                    "step %d: %d record(s) unreadable (%d so far), the last in %s from byte %d on; "
                    "`python -m tfvssl.prepare --verify` checks a dataset root",
                    current, new["corrupt"], totals["corrupt_records"], files[cut[0]], cut[1],
                )
            logs = {name: float(value) for name, value in logs.items()}
            if not logs.pop("finite"):
                nonfinite += 1
                logging.warning(
                    "step %d: non-finite loss (%s); the update was skipped (%d of at most %d)",
                    current, logs.get("loss"), nonfinite, config.max_nonfinite_steps,
                )
                if nonfinite >= config.max_nonfinite_steps:
                    raise NonFiniteLossError(
                        f"stopping at step {current}: {nonfinite} steps had a non-finite loss "
                        f"(--max_nonfinite_steps={config.max_nonfinite_steps}); the last good "
                        f"checkpoint is {checkpointer.latest}"
                    )
                continue
            for name, value in logs.items():
                interval.setdefault(name, []).append(value)
            if current % config.log_every == 0 or current == config.train_steps:
                rate = clock.interval_rate(current)
                scalars = {f"train/{name}": float(np.mean(values)) for name, values in interval.items()}
                scalars.update(lr=lr, curriculum_stage=traced_stage, **position.metrics())
                if rate:
                    scalars["clips_per_second"] = rate * global_batch
                reporting.progress_line(
                    current, config.train_steps, scalars, scalars.get("clips_per_second"), clock.eta(current)
                )
                writer.write(current, scalars)
                interval = {}
            if val_dataset is not None and (current % val_every == 0 or current == config.train_steps):
                val_logs = validate(validation_step, val_dataset)
                schedule.on_validation(val_logs["loss"], current)
                writer.write(current, {f"val/{name}": value for name, value in val_logs.items()})
                logging.info("step %d validation: %s", current, _format(val_logs))
            if stop.received or current % config.checkpoint_every == 0 or current == config.train_steps:
                path = checkpointer.save(current)
                if path:
                    logging.info("saved %s", path)
            if stop.received:
                name = signal.Signals(stop.received).name
                raise Interrupted(
                    stop.received, f"{name}: stopped at step {current} with {checkpointer.latest}; run the "
                    "same command to resume",
                )
    except tf.errors.OpError as error:
        reason = pipeline.stop_reason(error)
        if reason is None:
            raise
        raise InputStoppedError(
            f"stopping at step {current}: {reason} (last checkpoint: {checkpointer.latest or 'none'})"
        ) from None
    finally:
        stop.restore()
        writer.close()
    # Replicas and workers must end with identical weights; this line lets one compare them.
    logging.info("step %d weights fingerprint %.10e", current, weights_fingerprint(model))
    return logs


def weights_fingerprint(model):
    """A float summarising every weight (sum of |w|, in float64): equal weights, equal value."""
    return float(sum(np.abs(v.numpy().astype(np.float64)).sum() for v in model.weights))


def _validation_dataset(config, method, train_files, global_batch):
    """`--val_batches` fixed batches from `--val_data` or the `--val_split` of the data root.

    The seed and order are fixed, so every validation sees the same clips and their losses
    are comparable (the plateau schedule depends on it). None when there is no such split.
    """
    source = config.val_data or config.data
    try:
        files = records.list_shards(source, config.val_split)
    except ValueError:
        if config.val_data:
            raise
        files = train_files
    if not config.val_data and files == train_files:
        logging.info("no %r split next to the training data: validation is off", config.val_split)
        return None
    dataset = pipeline.training_dataset(
        files, method, global_batch, seed=config.seed + 1, shuffle_buffer=1, deterministic=True,
        max_corrupt_fraction=config.max_corrupt_fraction,
        max_records_without_example=config.max_records_without_example,
    )
    return dataset.take(config.val_batches)


def _format(logs):
    return ", ".join(f"{name} {value:.4g}" for name, value in logs.items())
