"""sports1m-train: one training loop for one device, one machine, many machines, parameter servers.

SGD with momentum 0.9 and decoupled weight decay, learning rate 1e-3 divided by
10 whenever validation clip Hit@1 stops improving, mini-batches of 32 clips per
replica (paper §3.3, SPEC §4). The same loop runs under every
`tf.distribute` strategy: `strategy.run` of a step function, checkpoints every
--checkpoint_every steps (a killed run restarted with the same command resumes
and ends at the same step), TensorBoard summaries, progress lines.

Usage:
  # one device (or all local GPUs with --strategy=mirrored)
  sports1m-train --model=slow_fusion --train_files='records/train-*' \
      --val_files='records/val-*' --model_dir=runs/slow --train_steps=100000
  # synchronous, several machines: the same command on each, TF_CONFIG naming the workers
  TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
              "task": {"type": "worker", "index": 0}}' sports1m-train ... --strategy=multi_worker
  # asynchronous parameter servers (the paper's Downpour SGD): the same command for
  # every task of a cluster with chief, worker and ps jobs; ps and worker tasks serve
  # until stopped, the chief trains
  TF_CONFIG='{"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", "h2:2222"],
              "ps": ["h3:2222"]}, "task": {"type": "chief", "index": 0}}' sports1m-train ...
  # any flags from a file
  sports1m-train --flagfile=slow_fusion.flags

From Python (transfer learning reuses the loop with its own model):
  config = make_config(model="single_frame", train_files=[...], model_dir="runs/x")
  result = train(config, build_model_fn=lambda config: my_model())
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from typing import Callable, Sequence

from absl import app, flags, logging

from sports1m_tf import checkpoints, cli, cpu_kernels, distribute, flags_common

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; the fields are the flags of `flags_common` (defaults live there).

    Build one with `make_config(**overrides)` or `config_from_flags()`.
    """
    model: str
    multires: bool
    width: float
    input_size: int | None
    num_classes: int | None
    dropout: float
    input_scale: float
    train_files: Sequence[str]
    val_files: Sequence[str] | None
    batch_size: int
    val_batches: int
    flip: bool
    shuffle_buffer: int
    max_skipped_fraction: float
    model_dir: str
    train_steps: int
    eval_every: int
    checkpoint_every: int
    log_every: int
    learning_rate: float
    optimizer: str
    momentum: float
    weight_decay: float
    plateau_patience: int
    min_learning_rate: float
    lr_schedule: str
    keep_checkpoints: int
    seed: int
    kernel_init: str
    strategy: str
    mixed_precision: str
    xla: str
    cpu_devices: int
    peer_timeout: float


_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def config_from_flags() -> TrainConfig:
    """The `TrainConfig` of the parsed command line."""
    return TrainConfig(**{name: FLAGS[name].value for name in _FIELDS})


def make_config(**overrides) -> TrainConfig:
    """A `TrainConfig` with the flags' defaults, changed by `overrides` (for Python callers)."""
    # A private FlagValues: other commands imported into the same process may
    # declare flags of the same names with other defaults.
    defaults = flags.FlagValues()
    flags_common.define_all(defaults)
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise TypeError(f"unknown training settings {unknown}")
    values = {name: defaults[name].default for name in _FIELDS}
    values.update(overrides)
    for name in ("train_files", "val_files"):
        if isinstance(values[name], str):
            values[name] = [values[name]]
    return TrainConfig(**values)


def _check_config(config: TrainConfig) -> None:
    if not config.model_dir:
        raise ValueError("model_dir is required")
    if not config.train_files:
        raise ValueError("train_files is required")
    for name in ("batch_size", "train_steps", "eval_every", "checkpoint_every", "log_every",
                 "plateau_patience", "keep_checkpoints"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")


def _next_boundary(current: int, config: TrainConfig) -> int:
    """The next step at which the loop logs, validates, checkpoints or ends."""
    every = [config.log_every, config.checkpoint_every]
    if config.val_files:
        every.append(config.eval_every)
    return min([config.train_steps] + [(current // n + 1) * n for n in every])


def make_learning_rate(config: TrainConfig):
    """`config.learning_rate` as the optimiser takes it: a float for the plateau schedule
    (which `train` lowers by assignment), a Keras schedule for cosine.

    Cosine decays from `learning_rate` at step 0 to `min_learning_rate` at
    `train_steps`, read off the optimiser's own step count, which the checkpoint holds,
    so a resumed run picks up the curve where it stopped.
    """
    if config.lr_schedule == "plateau":
        return config.learning_rate
    if config.lr_schedule == "cosine":
        import keras
        floor = min(config.min_learning_rate, config.learning_rate)
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.train_steps,
            alpha=floor / config.learning_rate if config.learning_rate else 0.0)
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected plateau or cosine")


def make_optimizer(config: TrainConfig):
    """The run's optimiser: SGD with momentum (the paper) or AdamW, both with decoupled
    weight decay on kernels only (biases are not decayed, as in AlexNet-style training)."""
    import keras
    learning_rate = make_learning_rate(config)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=config.momentum,
                                         weight_decay=config.weight_decay or None)
    elif config.optimizer == "adam":
        # AdamW's decay is w <- w - lr * wd * w, the same decoupled rule as SGD's.
        optimizer = keras.optimizers.AdamW(learning_rate,
                                           weight_decay=config.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; expected sgd or adam")
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


def make_train_step(strategy, model, optimizer, step, *, xla: bool = False):
    """The training step every strategy runs (also timed by benchmarks/train_step.py).

    Soft-target cross-entropy averaged over the global batch
    (`tf.nn.compute_average_loss`), gradients of the model's trainable variables
    only, `optimizer.apply_gradients`. A step whose loss or gradient is not
    finite is skipped as a whole, decided in cross-replica context so that every
    replica and worker agrees.

    Args:
      strategy: the `tf.distribute.Strategy` the model and optimiser were built in.
      model: `keras.Model`, uint8 clips → softmax.
      optimizer: a built Keras optimiser (possibly a `LossScaleOptimizer`).
      step: int64 `tf.Variable`, incremented once per applied step.
      xla: bool. XLA-compile the forward and backward pass.

    Returns:
      A `tf.function` `train_step(iterator) -> loss` (float32 scalar; NaN when
      the step was skipped), `iterator` yielding `(frames, target)`.
    """
    import keras
    import tensorflow as tf

    variables = model.trainable_variables
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_gradients(frames, target):
        with tf.GradientTape() as tape:
            probs = model(frames, training=True)
            # Soft-target cross-entropy: multi-label clips have uniform targets.
            per_clip = keras.losses.categorical_crossentropy(target, probs)
            loss = tf.nn.compute_average_loss(per_clip)
            scaled = optimizer.scale_loss(loss) if loss_scaled else loss
        grads = tape.gradient(scaled, variables)
        # Loss scaling overflows on purpose now and then (the optimiser skips
        # those steps itself); otherwise a non-finite gradient means divergence.
        norm = tf.zeros([]) if loss_scaled else tf.linalg.global_norm(grads)
        return grads, loss, norm

    if xla:
        replica_gradients = tf.function(replica_gradients, jit_compile=True)

    def replica_apply(grads):
        optimizer.apply_gradients(zip(grads, variables))

    @tf.function
    def train_step(iterator):
        frames, target = next(iterator)
        grads, losses, norms = strategy.run(replica_gradients, args=(frames, target))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
        norm = strategy.reduce(tf.distribute.ReduceOp.SUM, norms, axis=None)
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        # Applying inside a cross-replica `if` (not in the replica function, where
        # control flow around the gradient all-reduce is not allowed): a skipped
        # step leaves weights, optimiser state and counter untouched.
        if finite:
            strategy.run(replica_apply, args=(grads,))
        step.assign_add(tf.cast(finite, tf.int64))
        # A skipped step reports NaN, even when only its gradient overflowed.
        return tf.where(finite, loss, tf.constant(float("nan")))

    return train_step


def train(config: TrainConfig, *, build_model_fn: Callable | None = None,
          run_config_extra: dict | None = None) -> dict:
    """Trains (or resumes) a run in `config.model_dir` under the configured strategy.

    Args:
      config: `TrainConfig`.
      build_model_fn: `fn(config) -> keras.Model`, called inside the strategy's
        scope with `num_classes` and `input_size` resolved; defaults to
        `sports1m_tf.models.build_model` from the config.
        Only the model's trainable variables are optimised (and decayed), so
        layers set `trainable=False` stay bit-identical. On resume the latest
        checkpoint overwrites whatever weights the function loaded.
      run_config_extra: dict. Merged into `run_config.json` (e.g. the
        transfer-learning regime); its model keys override the built model's.

    Returns:
      dict: `step` (final), `loss` (last logged training loss), `validation`
      (last validation's `hit_at_1` and `loss`, or None), `model` (the
      `keras.Model`), `model_path` (the chief's model.keras; None elsewhere),
      `best_model_path` (the chief's best_model.keras: the weights of the best
      validation clip Hit@1, for model selection; None without validation or
      off the chief), `best_step` (its step),
      `learning_rate` (final), `weights_sha256` (digest of the final
      weights). The ps and worker tasks of a parameter-server cluster serve
      forever instead of returning.

    Raises:
      FloatingPointError: the loss became NaN or infinite (the last good state is
        checkpointed first; the message names the step).
      ValueError: bad settings, a malformed TF_CONFIG, or a model_dir holding a
        different model.
    """
    _check_config(config)
    # -----------------------------------------------------------------------
    # Cluster and strategy
    # -----------------------------------------------------------------------
    task = distribute.parse_tf_config()
    if distribute.is_server_task(config.strategy, task):
        distribute.serve_forever(task)  # ps and worker tasks of a parameter-server cluster
    if config.cpu_devices > 1:
        distribute.split_cpu(config.cpu_devices)
    import keras
    import numpy as np
    import tensorflow as tf

    from sports1m_tf import data, metrics, summaries
    from sports1m_tf.models import build_model, default_input_size, describe

    strategy, task = distribute.make_strategy(config.strategy, peer_timeout=config.peer_timeout)
    chief = distribute.is_chief(task)
    async_ps = isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    replicas = strategy.num_replicas_in_sync

    # -----------------------------------------------------------------------
    # Precision, XLA, seeds
    # -----------------------------------------------------------------------
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bfloat16" if on_gpu else "off"
    keras.mixed_precision.set_global_policy(
        "float32" if precision == "off" else f"mixed_{precision}")
    xla = config.xla == "on" or (config.xla == "auto" and on_gpu)
    keras.utils.set_random_seed(config.seed)

    # -----------------------------------------------------------------------
    # Classes and the run's description
    # -----------------------------------------------------------------------
    from sports1m_tf.data import clip_selection, dataset_info, input_checks
    class_names = dataset_info.read_classes(config.train_files)
    num_classes = config.num_classes or (len(class_names) if class_names else None)
    if num_classes is None:
        raise ValueError("num_classes is not set and no dataset.json with classes lies "
                         f"beside {list(config.train_files)}")
    if class_names and len(class_names) != num_classes:
        raise ValueError(f"num_classes={num_classes} but the records' dataset.json lists "
                         f"{len(class_names)} classes")
    input_size = config.input_size or default_input_size(config.model, config.multires)

    # -----------------------------------------------------------------------
    # Model, optimiser, step counter, checkpoint
    # -----------------------------------------------------------------------
    with strategy.scope():
        if build_model_fn is None:
            model = build_model(config.model, num_classes, multires=config.multires,
                                width=config.width, input_size=input_size,
                                dropout=config.dropout, input_scale=config.input_scale,
                                kernel_init=config.kernel_init)
        else:
            model = build_model_fn(dataclasses.replace(config, num_classes=num_classes,
                                                       input_size=input_size))
        optimizer = make_optimizer(config)
        if precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        variables = model.trainable_variables
        optimizer.build(variables)
        # A plain tf.Variable: Keras variables' assign_add is not atomic under
        # asynchronous parameter-server updates (optimizer.iterations undercounts).
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # The plateau schedule's state lives in the checkpoint so that resuming keeps it.
    plateau_best = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="plateau_best")
    plateau_wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_wait")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                     plateau=tf.train.Checkpoint(best=plateau_best,
                                                                 wait=plateau_wait))
    latest = tf.train.latest_checkpoint(config.model_dir)

    built = describe(model)
    run_config = {"model": built["name"], "multires": built["multires"],
                  "num_classes": built["num_classes"], "input_size": built["input_size"],
                  "class_names": class_names, "clip_frames": 16,
                  **{k: v for k, v in dataclasses.asdict(config).items()
                     if k not in ("model", "multires", "input_size", "num_classes")},
                  # What the built model holds (a fine-tuned model keeps its source's).
                  "input_scale": built["input_scale"],
                  "resolved_strategy": type(strategy).__name__, "replicas": replicas,
                  "resolved_mixed_precision": precision, "resolved_xla": xla,
                  **(run_config_extra or {})}
    config_path = os.path.join(config.model_dir, checkpoints.RUN_CONFIG_FILE)
    if latest and os.path.exists(config_path):
        previous = checkpoints.load_run_config(config.model_dir)
        changed = {k: (previous[k], run_config[k]) for k in checkpoints.MODEL_KEYS
                   if previous.get(k) != run_config.get(k)}
        # Runs from before these settings existed used the defaults.
        for k, default in (("input_scale", 1.0), ("optimizer", "sgd")):
            if previous.get(k, default) != run_config[k]:
                changed[k] = (previous.get(k, default), run_config[k])
        input_checks.check_class_names(previous.get("class_names"), class_names,
                                       model_source=config_path,
                                       data_source="--train_files' dataset.json")
        if changed:
            raise ValueError(f"{config.model_dir} holds a run of another model; "
                             f"(old, new): {changed}")
        # The checkpoint's weights replace the initialisation: record the one the run
        # really started from (runs from before the flag: Glorot, the default).
        run_config["kernel_init"] = previous.get("kernel_init", "glorot_uniform")
    if chief:
        checkpoints.write_run_config(config.model_dir, run_config)

    write_dir = checkpoints.write_dir(config.model_dir, chief, task.task_id if task else 0)
    manager = tf.train.CheckpointManager(
        checkpoint, write_dir, max_to_keep=config.keep_checkpoints if chief else 1,
        checkpoint_name=checkpoints.CHECKPOINT_NAME)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("resumed from %s", latest)
    start_step = int(step.numpy())
    # The best-validation model outlives checkpoint rotation. Its own record, not
    # plateau_best, says what to beat: a kill between the two writes must not let a
    # worse model replace it on resume. A fresh run drops a stale one.
    best_info = checkpoints.load_best_info(config.model_dir) if latest else None
    best_hit = best_info["val_clip_hit_at_1"] if best_info else -1.0
    best_step = best_info["step"] if best_info else None
    if chief and not latest:
        for name in (checkpoints.BEST_MODEL_FILE, checkpoints.BEST_MODEL_INFO):
            if os.path.exists(os.path.join(config.model_dir, name)):
                os.remove(os.path.join(config.model_dir, name))

    # -----------------------------------------------------------------------
    # Input
    # -----------------------------------------------------------------------
    data_args = dict(model=built["name"], multires=built["multires"],
                     num_classes=built["num_classes"], input_size=built["input_size"])
    from sports1m_tf import skip_report
    input_checks.check_run_inputs(config.train_files, config.val_files, built["input_size"])
    skip_counter = data.ErrorCounter(config.max_skipped_fraction)
    # Each input pipeline gets its own seed, moved on by the resumed step so that a
    # restarted run does not replay the clips it has already seen. (Iterator state
    # is not checkpointed: it would carry the shuffle buffers of decoded clips.)
    data_seed = config.seed + 1_000_003 * start_step

    def train_dataset_fn(input_context=None):
        pipeline = input_context.input_pipeline_id if input_context else 0
        return data.clip_dataset(
            list(config.train_files), training=True, batch_size=config.batch_size,
            flip=config.flip, repeat=-1, seed=None if async_ps else data_seed + 7919 * pipeline,
            shuffle_buffer=config.shuffle_buffer, error_counter=skip_counter, **data_args)

    if async_ps:
        # One function builds every worker's pipeline: with the global seed cleared,
        # each worker shuffles its own way (asynchronous training is not
        # reproducible anyway).
        tf.random.set_seed(None)
        coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
        iterator = iter(coordinator.create_per_worker_dataset(train_dataset_fn))
    else:
        iterator = iter(strategy.distribute_datasets_from_function(train_dataset_fn))
    val_dataset = None
    if config.val_files:
        val_dataset = data.clip_dataset(list(config.val_files), training=False,
                                        batch_size=config.batch_size, **data_args,
                                        keep=clip_selection.validation_keep(
                                            config.val_files, config.val_batches,
                                            config.batch_size, seed=config.seed))
        if config.val_batches > 0:
            val_dataset = val_dataset.take(config.val_batches)

    # -----------------------------------------------------------------------
    # Steps
    # -----------------------------------------------------------------------
    train_step = make_train_step(strategy, model, optimizer, step, xla=xla)

    @tf.function
    def predict(frames):
        return model(frames, training=False)

    def run_steps(count: int) -> list[float]:
        """Runs `count` steps; returns their losses (sync: stops at a non-finite one)."""
        if async_ps:
            scheduled = [coordinator.schedule(train_step, args=(iterator,))
                         for _ in range(count)]
            coordinator.join()
            return [float(value.fetch()) for value in scheduled]
        losses = []
        for _ in range(count):
            losses.append(float(train_step(iterator)))
            if not math.isfinite(losses[-1]):
                break
        return losses

    @tf.function
    def mean_over_workers(value):
        per_replica = strategy.run(lambda v: tf.identity(v), args=(value,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    def agree(value: float) -> float:
        """`value` made identical on every worker (each runs the same validation, but a
        differently rounded result must not let their learning rates diverge)."""
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return value
        return float(mean_over_workers(tf.constant(value, tf.float64)))

    def validate() -> dict:
        probs, targets = [], []
        for frames, target in val_dataset:
            probs.append(predict(frames).numpy())
            targets.append(target.numpy())
        probs, targets = np.concatenate(probs), np.concatenate(targets)
        labels = targets > 0
        loss = float(np.mean(-np.sum(targets * np.log(np.clip(probs, 1e-7, 1.0)), axis=1)))
        return {"hit_at_1": agree(metrics.hit_at_k(probs, labels, 1)), "loss": agree(loss),
                "clips": len(probs), "confusion": metrics.confusion_counts(probs, labels)}

    # -----------------------------------------------------------------------
    # Summaries (chief only)
    # -----------------------------------------------------------------------
    if chief:
        train_writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "validation"))
    else:
        train_writer = val_writer = tf.summary.create_noop_writer()

    saved_at = start_step if latest else None

    def save(at: int) -> None:
        # Every MultiWorkerMirrored worker must take part (so the decision to save
        # depends only on the step); only the chief's copy stays.
        nonlocal saved_at
        manager.save(checkpoint_number=at)
        saved_at = at

    # -----------------------------------------------------------------------
    # Loop
    # -----------------------------------------------------------------------
    clips_per_step = config.batch_size * replicas
    current, last_loss, last_validation = start_step, float("nan"), None
    logging.info("training %s from step %d to %d: %d clips per step over %d replica(s)%s",
                 model.name, current, config.train_steps, clips_per_step, replicas,
                 " (asynchronous parameter servers)" if async_ps else "")
    with train_writer.as_default():
        summaries.write_filter_images(model, current)
    # Only time spent in steps counts towards speed (not validation or saving).
    window_time, window_steps = 0.0, 0
    while current < config.train_steps:
        started = time.perf_counter()
        with skip_report.explain_stream_end(skip_counter):
            losses = run_steps(_next_boundary(current, config) - current)
        window_time += time.perf_counter() - started
        done = int(step.numpy())
        bad = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
        if bad:
            # The non-finite step was not applied: the state is the last good one.
            save(done)
            raise FloatingPointError(
                f"training loss or gradient is not finite at step {current + bad[0] + 1} "
                f"(model_dir {config.model_dir}); the last good state is saved as "
                f"checkpoint {done}: lower --learning_rate or check the data")
        window_steps += done - current
        current, last_loss = done, float(np.mean(losses))

        if current % config.log_every == 0 or current == config.train_steps:
            step_time = window_time / max(window_steps, 1)
            clips_per_s = window_steps * clips_per_step / max(window_time, 1e-9)
            learning_rate = float(np.asarray(optimizer.learning_rate))
            eta = (config.train_steps - current) * step_time
            logging.info("step %d/%d  loss %.4f  %.1f clips/s  %.3f s/step  lr %.2g  ETA %s",
                         current, config.train_steps, last_loss, clips_per_s, step_time,
                         learning_rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
            with train_writer.as_default():
                tf.summary.scalar("loss", last_loss, step=current)
                tf.summary.scalar("learning_rate", learning_rate, step=current)
                tf.summary.scalar("clips_per_second", clips_per_s, step=current)
                tf.summary.scalar("step_time_seconds", step_time, step=current)
            skip_report.report(skip_counter, train_writer, current)
            window_time, window_steps = 0.0, 0

        if val_dataset is not None and (current % config.eval_every == 0
                                        or current == config.train_steps):
            last_validation = validate()
            hit = last_validation["hit_at_1"]
            # Plateau schedule: x0.1 after `plateau_patience` validations without a gain.
            if hit > float(plateau_best.numpy()):
                plateau_best.assign(hit)
                plateau_wait.assign(0)
            else:
                plateau_wait.assign_add(1)
            if (config.lr_schedule == "plateau"
                    and int(plateau_wait.numpy()) >= config.plateau_patience):
                lowered = max(float(np.asarray(optimizer.learning_rate)) * 0.1,
                              config.min_learning_rate)
                optimizer.learning_rate.assign(lowered)
                plateau_wait.assign(0)
                logging.info("validation Hit@1 has not improved for %d evaluations: "
                             "learning rate now %.2g", config.plateau_patience, lowered)
            logging.info("validation at step %d: clip Hit@1 %.4f, loss %.4f (%d clips)",
                         current, hit, last_validation["loss"], last_validation["clips"])
            if hit > best_hit:
                best_hit, best_step = hit, current
                if chief:
                    checkpoints.save_best_model(model, config.model_dir, current, hit)
            with val_writer.as_default():
                tf.summary.scalar("clip_hit_at_1", hit, step=current)
                tf.summary.scalar("loss", last_validation["loss"], step=current)
                summaries.write_confusion_image(last_validation["confusion"], current)
            with train_writer.as_default():
                summaries.write_filter_images(model, current)

        if current % config.checkpoint_every == 0 or current == config.train_steps:
            save(current)

    # -----------------------------------------------------------------------
    # Final model
    # -----------------------------------------------------------------------
    if saved_at != current:
        save(current)
    model_path = os.path.join(config.model_dir, checkpoints.FINAL_MODEL_FILE)
    if chief:
        with train_writer.as_default():
            summaries.write_filter_images(model, current)
        train_writer.flush()
        val_writer.flush()
        model.save(model_path)
        logging.info("finished at step %d; final model %s", current, model_path)
    else:
        checkpoints.discard_write_dir(write_dir, config.model_dir)
    # Identifies the final weights across processes (MultiWorkerMirrored workers agree).
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy())).tobytes())
    validation = None if last_validation is None else {
        k: last_validation[k] for k in ("hit_at_1", "loss", "clips")}
    return {"step": current, "loss": last_loss, "validation": validation, "model": model,
            "model_path": model_path if chief else None,
            "best_model_path": (os.path.join(config.model_dir, checkpoints.BEST_MODEL_FILE)
                                if chief and best_step is not None else None),
            "best_step": best_step,
            "learning_rate": float(np.asarray(optimizer.learning_rate)),
            "weights_sha256": digest.hexdigest()}


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("model_dir", "train_files"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    done = checkpoints.finished_step(FLAGS.model_dir, FLAGS.train_steps)
    if done is not None:
        print(f"{FLAGS.model_dir} is already at step {done} (--train_steps={FLAGS.train_steps}): "
              "nothing to do; raise --train_steps to train further")
        return
    try:
        result = train(config_from_flags())
    except cli.UserError:
        raise
    except (ValueError, TimeoutError, FloatingPointError) as e:
        logging.error("%s", e)
        raise SystemExit(f"sports1m-train: error: {e}") from None
    print(cli.json_text({k: result[k] for k in ("step", "loss", "validation", "model_path",
                                             "best_model_path", "best_step",
                                             "learning_rate", "weights_sha256")}))


def run() -> None:
    flags_common.define_all()
    cli.entry(main)()


if __name__ == "__main__":
    run()
