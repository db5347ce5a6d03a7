"""sports1m-train: one training loop for one device, one machine, many machines, parameter servers.

SGD with momentum 0.9 and decoupled weight decay, learning rate 1e-3 divided by
10 whenever validation clip Hit@1 stops improving, mini-batches of 32 clips per
replica, as in the paper (docs/design.md, "Training"). The same loop runs under every
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

import contextlib
import dataclasses
import math
import os
import time
from typing import Callable, Sequence

from absl import app, flags, logging

from sports1m_tf import cli, distribute, run_folder, settings
# Callers build a run's settings through this module too: train.make_config(...).
from sports1m_tf.settings import TrainConfig, config_from_flags, make_config  # noqa: F401
from sports1m_tf.training import profiling
from tfrecord_tools import fileio, schema

FLAGS = flags.FLAGS


def _check_config(config: TrainConfig) -> None:
    if not config.model_dir:
        raise ValueError("model_dir is required")
    if not config.train_files:
        raise ValueError("train_files is required")
    settings.check_settings(config)
    profiling.parse_steps(config.profile_steps)


def _next_boundary(current: int, config: TrainConfig, stops: Sequence[int] = ()) -> int:
    """The next step at which the loop logs, validates, checkpoints, ends or passes `stops`."""
    every = [config.log_every, config.checkpoint_every]
    if config.val_files:
        every.append(config.eval_every)
    return min([config.train_steps] + [(current // n + 1) * n for n in every]
               + [s for s in stops if s > current])


def build_training_dataset(config: TrainConfig, data_args: dict, seed: int | None,
                           input_context=None, error_counter=None):
    """The training input of one pipeline: shuffled, augmented, repeated batches.

    Args:
      config: `TrainConfig` (files, batch size, flip, shuffle buffer).
      data_args: What the built model reads (`_data_args`).
      seed: The run's data seed (None: each pipeline its own way).
      input_context: `tf.distribute.InputContext` of this pipeline, or None.
      error_counter: `data.ErrorCounter` that counts the records skipped, or None.

    Returns:
      `tf.data.Dataset` of `(frames, target)` batches of `config.batch_size`.
    """
    from sports1m_tf import data
    pipeline = input_context.input_pipeline_id if input_context else 0
    return data.clip_dataset(
        config.train_files, training=True, batch_size=config.batch_size,
        flip=config.flip, repeat=-1, seed=None if seed is None else seed + 7919 * pipeline,
        shuffle_buffer=config.shuffle_buffer, error_counter=error_counter, **data_args)


def build_validation_dataset(config: TrainConfig, data_args: dict):
    """The validation input: centre crops of `config.val_files`, once.

    The clips are the same at every validation and spread over as many of the
    split's videos as `val_batches` batches allow (`clip_selection`).

    Returns:
      `tf.data.Dataset` of `(frames, target)` batches, limited to
      `config.val_batches` batches when that is positive.
    """
    from sports1m_tf import data
    from sports1m_tf.data import clip_selection
    keep = clip_selection.validation_keep(config.val_files, config.val_batches,
                                          config.batch_size, seed=config.seed)
    dataset = data.clip_dataset(config.val_files, training=False,
                                batch_size=config.batch_size, keep=keep, **data_args)
    return dataset.take(config.val_batches) if config.val_batches > 0 else dataset


def _training_iterator(strategy, config: TrainConfig, data_args: dict, start_step: int):
    """`(iterator, coordinator, skipped)` over the training input of every replica.

    First checks that the records' frames hold the model's crop (a pipeline that
    drops every clip would never yield a batch). `skipped` is the
    `data.ErrorCounter` of the records the pipelines could not decode.

    Each input pipeline gets its own seed, moved on by the resumed step so that a
    restarted run does not replay the clips it has already seen. (Iterator state
    is not checkpointed: it would carry the shuffle buffers of decoded clips.)
    The coordinator is None except under parameter servers.
    """
    import tensorflow as tf

    from sports1m_tf import data
    from sports1m_tf.data import input_checks
    input_checks.check_run_inputs(config.train_files, config.val_files, data_args["input_size"],
                                  batch_size=config.batch_size)
    skipped = data.ErrorCounter(config.max_skipped_fraction)
    if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        # One function builds every worker's pipeline: with the global seed cleared,
        # each worker shuffles its own way (asynchronous training is not
        # reproducible anyway).
        if config.data_service:
            raise cli.UserError("--data_service works with one_device, mirrored and "
                                "multi_worker, not with parameter servers")
        tf.random.set_seed(None)
        coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
        dataset = coordinator.create_per_worker_dataset(
            lambda context=None: build_training_dataset(config, data_args, None, context,
                                                        skipped))
        return iter(dataset), coordinator, skipped
    seed = config.seed + 1_000_003 * start_step
    if config.data_service:
        # The whole pipeline runs on the service's workers; every trainer of the run
        # joins one job (same name, same seed), so each batch goes to one trainer.
        from sports1m_tf.data import service as data_service
        data_service.check_dispatcher(config.data_service, config.peer_timeout)
        job = data_service.job_name(config.model_dir, start_step)
        dataset = strategy.distribute_datasets_from_function(
            lambda context=None: data_service.service_training_dataset(
                config.train_files, service=config.data_service, seed=seed,
                job_name=job, batch_size=config.batch_size, flip=config.flip,
                shuffle_buffer=config.shuffle_buffer, **data_args))
        return iter(dataset), None, skipped  # skips are logged by the service's workers
    dataset = strategy.distribute_datasets_from_function(
        lambda context=None: build_training_dataset(config, data_args, seed, context, skipped))
    return iter(dataset), None, skipped


def validate(predict: Callable, dataset, agree: Callable[[float], float] = float) -> dict:
    """Clip-level validation of a model on `dataset`, batch by batch.

    Nothing of size clips × classes is kept: each batch adds its hits, its loss
    and its confusions (sparse), so memory follows the batch, at any number of classes.

    Args:
      predict: `fn(frames) -> probabilities`, the model in inference mode.
      dataset: `tf.data.Dataset` of `(frames, target)` batches.
      agree: makes a float identical on every worker (`distribute.make_agree`).

    Returns:
      dict: `hit_at_1` (clip Hit@1), `loss` (mean cross-entropy), `clips`,
      `confusion` (`metrics.Confusions`).
    """
    import numpy as np

    from sports1m_tf import metrics
    hits, loss_sum, clips, confusion = 0, 0.0, 0, None
    for frames, target in dataset:
        probs, target = predict(frames).numpy(), target.numpy()
        labels = target > 0
        hits += int(metrics.hits_at_k(probs, labels, 1).sum())
        loss_sum += float(-np.sum(target * np.log(np.clip(probs, 1e-7, 1.0))))
        clips += len(probs)
        batch = metrics.Confusions.from_predictions(probs, labels)
        confusion = batch if confusion is None else confusion + batch
    if not clips:
        raise ValueError("validation read no clip: check --val_files")
    return {"hit_at_1": agree(hits / clips), "loss": agree(loss_sum / clips), "clips": clips,
            "confusion": confusion}


def _resolve_precision(config: TrainConfig) -> tuple[str, bool]:
    """Sets the Keras dtype policy and seed; returns `(precision, xla)` as resolved."""
    import keras
    import tensorflow as tf
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bfloat16" if on_gpu else "off"
    keras.mixed_precision.set_global_policy(
        "float32" if precision == "off" else f"mixed_{precision}")
    keras.utils.set_random_seed(config.seed)
    return precision, config.xla == "on" or (config.xla == "auto" and on_gpu)


def _resolve_classes(config: TrainConfig) -> tuple[list | None, int]:
    """`(class_names, num_classes)` from the settings and the records' dataset.json."""
    from sports1m_tf.data import dataset_info
    class_names = dataset_info.read_classes(config.train_files)
    num_classes = config.num_classes or (len(class_names) if class_names else None)
    if num_classes is None:
        raise ValueError("num_classes is not set and no dataset.json with classes lies "
                         f"beside {list(config.train_files)}")
    if class_names and len(class_names) != num_classes:
        raise ValueError(f"num_classes={num_classes} but the records' dataset.json lists "
                         f"{len(class_names)} classes")
    return class_names, num_classes


def _build_model(config: TrainConfig, build_model_fn: Callable | None, num_classes: int):
    """The run's model, from `build_model_fn` or from the settings (in the strategy's scope)."""
    from sports1m_tf.models import build_model, default_input_size
    config = dataclasses.replace(
        config, num_classes=num_classes,
        input_size=config.input_size or default_input_size(config.model, config.multires))
    if build_model_fn is not None:
        return build_model_fn(config)
    return build_model(config.model, num_classes, multires=config.multires, width=config.width,
                       input_size=config.input_size, dropout=config.dropout,
                       input_scale=config.input_scale, kernel_init=config.kernel_init)


def _data_args(model) -> dict:
    """What the input pipelines must produce for `model` (read off the built model)."""
    from sports1m_tf.models import describe
    built = describe(model)
    return {k: built[k] for k in ("multires", "num_classes", "input_size")} | {
        "model": built["name"]}


def _with_files_listed(config: TrainConfig) -> TrainConfig:
    """`config` with its record globs listed, once for every step that reads them."""
    from sports1m_tf.data import input_checks
    train, val = input_checks.list_run_files(config.train_files, config.val_files)
    return dataclasses.replace(config, train_files=train, val_files=val or None)


def _run_config(config: TrainConfig, model, class_names, strategy, precision: str,
                xla: bool, extra: dict | None) -> dict:
    """The run's config: the built model, the classes, the settings as resolved."""
    from sports1m_tf.models import describe
    built = describe(model)
    return {"model": built["name"], "multires": built["multires"],
            "num_classes": built["num_classes"], "input_size": built["input_size"],
            "class_names": class_names, "clip_frames": schema.CLIP_FRAMES,
            **{k: v for k, v in dataclasses.asdict(config).items()
               if k not in ("model", "multires", "input_size", "num_classes")},
            # What the built model holds (a fine-tuned model keeps its source's).
            "input_scale": built["input_scale"],
            "resolved_strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync,
            "resolved_mixed_precision": precision, "resolved_xla": xla,
            **(extra or {})}


class _Progress:
    """Training speed and input wait over the steps since the last progress line.

    Validation and saving are left out. Under parameter servers `streams`
    workers run steps at once, so their waits are shared out over them.
    """

    def __init__(self, config: TrainConfig, clips_per_step: int, writer, skipped,
                 verdicts, streams: int = 1):
        self._config, self._clips_per_step, self._writer = config, clips_per_step, writer
        self._skipped, self._verdicts, self._streams = skipped, verdicts, streams
        self._window = None

    def add(self, seconds: float, steps: int, input_seconds: float, cpu_seconds: float) -> None:
        from sports1m_tf.training import input_wait
        more = input_wait.Interval(steps, steps * self._clips_per_step, seconds, input_seconds,
                                   cpu_seconds, self._streams)
        self._window = more if self._window is None else self._window + more

    def report(self, step: int, loss: float, learning_rate: float) -> None:
        """Logs a progress line (and a verdict on the input, once it holds) and writes the
        training scalars; starts a new window.

        Raises:
          data.errors.SkippedRecordsError: more records were skipped than
            `--max_skipped_fraction` allows.
        """
        from sports1m_tf.training import skip_report, summaries
        window, self._window = self._window, None
        eta = (self._config.train_steps - step) * window.step_seconds
        logging.info("step %d/%d  loss %.4f  %.1f clips/s  input wait %.0f%%  %.3f s/step  "
                     "lr %.2g  ETA %s", step, self._config.train_steps, loss,
                     window.clips_per_second, 100 * window.input_wait, window.step_seconds,
                     learning_rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
        verdict = self._verdicts.offer(window)
        if verdict:
            logging.info("%s", verdict)
        summaries.write_training_scalars(self._writer, step, loss=loss,
                                         learning_rate=learning_rate, **window.scalars())
        skip_report.report(self._skipped, self._writer, step)


def _at(step: int, every: int, config: TrainConfig) -> bool:
    return step % every == 0 or step == config.train_steps


class _GoodCheckpoints:
    """Saves checkpoints only of finite state, and remembers the last one it checked.

    A step whose loss or gradient is not finite is not applied, but a finite
    gradient can still carry the weights to infinity; so every save first checks
    every floating-point variable of the model and the optimiser. "The last good
    state" then always names a checkpoint whose weights were seen finite.
    """

    def __init__(self, manager, variables, config: TrainConfig, last_good: int | None):
        import keras
        import tensorflow as tf
        self._manager, self._config, self.last_good = manager, config, last_good
        floats = [v for v in variables if keras.backend.is_float_dtype(v.dtype)]
        # One reduction on the devices that hold the variables: no host copy of them.
        self._finite = tf.function(lambda: tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(v)) for v in floats]))

    def finite(self) -> bool:
        return bool(self._finite())

    def _last_good_text(self) -> str:
        if self.last_good is None:
            return "no checkpoint of this run was written"
        return f"the last good state is checkpoint {self.last_good}"

    def save(self, step: int) -> None:
        """Saves checkpoint `step`.

        Raises:
          FloatingPointError: a weight or optimiser slot is not finite (nothing saved).
        """
        if not self.finite():
            raise FloatingPointError(
                f"the weights are not finite at step {step} (model_dir "
                f"{self._config.model_dir}); {self._last_good_text()}: lower "
                "--learning_rate or --weight_decay, or check the data")
        self._manager.save(checkpoint_number=step)
        self.last_good = step

    def stop_not_finite(self, losses: list[float], first_step: int, done: int):
        """Saves the state after a skipped step if it is finite; returns the error to raise."""
        bad = first_step + next(i for i, x in enumerate(losses) if not math.isfinite(x)) + 1
        if self.finite():
            self._manager.save(checkpoint_number=done)
            self.last_good = done
            saved = f"the last good state is saved as checkpoint {done}"
        else:
            saved = f"the weights were already not finite; {self._last_good_text()}"
        return FloatingPointError(
            f"training loss or gradient is not finite at step {bad} (model_dir "
            f"{self._config.model_dir}); {saved}: lower --learning_rate or check the data")


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
      run_config_extra: Merged into the run config (e.g. the
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
      FloatingPointError: the loss, a gradient or the weights became NaN or
        infinite (the message names the step and the last checkpoint checked finite).
      ValueError: bad settings (`settings.SettingError`), a malformed TF_CONFIG, a
        model_dir holding a different model or a checkpoint that is not finite.
      cli.UserError: another process trains in `model_dir`.
    """
    _check_config(config)
    task = distribute.parse_tf_config()
    if distribute.is_server_task(config.strategy, task):
        distribute.serve_forever(task)  # ps and worker tasks of a parameter-server cluster
    # One writer per run folder: the chief (the other workers write elsewhere).
    with (run_folder.writer_lock(config.model_dir) if distribute.is_chief(task)
          else contextlib.nullcontext()):
        return _train(config, build_model_fn, run_config_extra)


def _train(config: TrainConfig, build_model_fn: Callable | None,
           run_config_extra: dict | None) -> dict:
    """`train` once this process may write the run folder."""
    if config.cpu_devices > 1:
        distribute.split_cpu(config.cpu_devices)
    import numpy as np
    import tensorflow as tf

    given, config = config, _with_files_listed(config)

    from sports1m_tf.training import input_wait, optimization, skip_report, summaries

    # Strategy, precision, classes, model and optimiser.
    strategy, task = distribute.make_strategy(config.strategy, peer_timeout=config.peer_timeout)
    chief = distribute.is_chief(task)
    precision, xla = _resolve_precision(config)
    class_names, num_classes = _resolve_classes(config)
    with strategy.scope():
        model = _build_model(config, build_model_fn, num_classes)
        optimizer = optimization.make_optimizer(config, loss_scale=precision == "float16")
        optimizer.build(model.trainable_variables)
        step = optimization.step_counter()
    plateau = optimization.PlateauSchedule(config.plateau_patience, config.min_learning_rate,
                                           lowers=config.lr_schedule == "plateau")

    # The run folder: its description, the checkpoint to resume, the best model so far.
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                     plateau=plateau)
    latest = tf.train.latest_checkpoint(config.model_dir)
    run_config = _run_config(given, model, class_names, strategy, precision, xla,
                             run_config_extra)
    if latest:
        run_config = run_folder.check_resumable(config.model_dir, run_config)
    if chief:
        run_folder.write_run_config(config.model_dir, run_config)
    write_dir = run_folder.write_dir(config.model_dir, chief, task.task_id if task else 0)
    manager = tf.train.CheckpointManager(
        checkpoint, write_dir, max_to_keep=config.keep_checkpoints if chief else 1,
        checkpoint_name=run_folder.CHECKPOINT_NAME)
    checkpoints = _GoodCheckpoints(manager, [*model.weights, *optimizer.variables], config,
                                   last_good=None)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        if not checkpoints.finite():
            raise ValueError(f"{latest} holds weights that are not finite (written by an "
                             "older version that did not check): delete its files to resume "
                             "from the checkpoint before it, or train in a new --model_dir")
        logging.info("resumed from %s", latest)
    start_step = int(step.numpy())
    checkpoints.last_good = start_step if latest else None
    best = run_folder.BestModel(config.model_dir, resumed=bool(latest), writer=chief)

    # Input and steps.
    data_args = _data_args(model)
    iterator, coordinator, skipped = _training_iterator(strategy, config, data_args, start_step)
    val_dataset = build_validation_dataset(config, data_args) if config.val_files else None
    train_step = optimization.make_train_step(strategy, model, optimizer, step, xla=xla)
    run_steps = distribute.make_step_runner(train_step, iterator, coordinator)
    agree = distribute.make_agree(strategy)
    predict = tf.function(lambda frames: model(frames, training=False))
    writers = summaries.run_writers(config.model_dir, chief)
    clips_per_step = config.batch_size * strategy.num_replicas_in_sync
    verdicts = input_wait.Verdicts(input_wait.input_setup(
        config.train_files, config.data_service, data_args["model"], data_args["input_size"]))
    progress = _Progress(config, clips_per_step, writers[0], skipped, verdicts,
                         streams=len(task.cluster["worker"]) if coordinator else 1)
    profile = profiling.ProfileWindow(profiling.parse_steps(config.profile_steps),
                                      config.model_dir, enabled=chief)

    # The loop: steps up to the next log, validation or checkpoint boundary.
    current, last_loss, validation = start_step, float("nan"), None
    logging.info("training %s from step %d to %d: %d clips per step over %d replica(s)%s",
                 model.name, current, config.train_steps, clips_per_step,
                 strategy.num_replicas_in_sync,
                 "" if coordinator is None else " (asynchronous parameter servers)")
    with writers[0].as_default():
        summaries.write_filter_images(model, current)
    while current < config.train_steps:
        profile.before_steps(current)
        started, cpu_started = time.perf_counter(), time.process_time()
        with skip_report.explain_stream_end(skipped):
            losses, waited = run_steps(
                _next_boundary(current, config, profile.boundaries()) - current,
                traced_from=current if profile.tracing else None)
        done = int(step.numpy())
        if not all(math.isfinite(loss) for loss in losses):
            # The non-finite step was not applied: the state is the last applied one.
            raise checkpoints.stop_not_finite(losses, current, done)
        progress.add(time.perf_counter() - started, done - current, waited,
                     time.process_time() - cpu_started)
        profile.after_steps(done)
        current, last_loss = done, float(np.mean(losses))
        if _at(current, config.log_every, config):
            progress.report(current, last_loss, optimization.current_learning_rate(optimizer))
        if val_dataset is not None and _at(current, config.eval_every, config):
            validation = validate(predict, val_dataset, agree)
            lowered = plateau.update(validation["hit_at_1"], optimizer)
            if lowered is not None:
                logging.info("validation Hit@1 has not improved for %d evaluations: "
                             "learning rate now %.2g", config.plateau_patience, lowered)
            logging.info("validation at step %d: clip Hit@1 %.4f, loss %.4f (%d clips)",
                         current, validation["hit_at_1"], validation["loss"],
                         validation["clips"])
            best.offer(model, current, validation["hit_at_1"])
            summaries.write_validation(writers, current, validation, model)
        if _at(current, config.checkpoint_every, config):
            # Every MultiWorkerMirrored worker takes part (so the decision depends
            # only on the step); only the chief's copy stays.
            checkpoints.save(current)

    # The final model.
    profile.close()
    if checkpoints.last_good != current:
        checkpoints.save(current)
    model_path = os.path.join(config.model_dir, run_folder.FINAL_MODEL_FILE)
    if chief:
        with writers[0].as_default():
            summaries.write_filter_images(model, current)
        for writer in writers:
            writer.flush()
        run_folder.save_final_model(model, config.model_dir, current)
        logging.info("finished at step %d; final model %s", current, model_path)
    else:
        run_folder.discard_write_dir(write_dir, config.model_dir)
    return {"step": current, "loss": last_loss, "model": model,
            "validation": None if validation is None else {
                k: validation[k] for k in ("hit_at_1", "loss", "clips")},
            "model_path": model_path if chief else None,
            "best_model_path": best.path, "best_step": best.step,
            "learning_rate": optimization.current_learning_rate(optimizer),
            "weights_sha256": run_folder.weights_digest(model)}


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
def _finished(config: TrainConfig) -> bool:
    """Whether the run is already at `train_steps`; then its final model is checked (and
    rewritten from the last checkpoint if it is cut short or not the recorded one)."""
    done = run_folder.finished_step(config.model_dir, config.train_steps)
    if done is None:
        return False
    if distribute.is_chief(distribute.parse_tf_config()):
        run_folder.ensure_final_model(config.model_dir, done)
    print(f"{config.model_dir} is already at step {done} (--train_steps={config.train_steps}): "
          "nothing to do; raise --train_steps to train further")
    return True


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("model_dir", "train_files"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    config = config_from_flags()
    try:
        settings.check_settings(config)  # before TensorFlow starts
        with (run_folder.writer_lock(config.model_dir)
              if distribute.is_chief(distribute.parse_tf_config()) else contextlib.nullcontext()):
            if _finished(config):
                return
            result = train(config)
    except (cli.UserError, settings.SettingError) as e:
        raise cli.UserError(str(e)) from None
    except (ValueError, TimeoutError, FloatingPointError) as e:
        logging.error("%s", e)
        raise SystemExit(f"sports1m-train: error: {e}") from None
    except Exception as e:
        if not fileio.is_disk_full(e):
            raise
        # The failed save's temporary files go; the checkpoints before it stay, and
        # rerunning the command resumes from the last of them.
        cut = run_folder.remove_partial_checkpoints(FLAGS.model_dir)
        raise fileio.disk_full(e, cut[0] if cut else None) from None
    print(cli.json_text({k: result[k] for k in ("step", "loss", "validation", "model_path",
                                                "best_model_path", "best_step",
                                                "learning_rate", "weights_sha256")}))


run = cli.entry(main, define=settings.define_flags)


if __name__ == "__main__":
    run()
