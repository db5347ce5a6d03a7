"""How a run updates its weights: the optimiser, its learning-rate rules, the training step.

The paper's recipe is SGD with momentum 0.9 and decoupled weight decay, the
learning rate divided by 10 whenever validation clip Hit@1 stops improving
(`PlateauSchedule`); AdamW and a cosine curve are the alternatives
(docs/design.md, "Training"). Imported by the training loop once TensorFlow may
load (see `sports1m_tf.cli`).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def make_learning_rate(config):
    """`config.learning_rate` as the optimiser takes it: a float for the plateau schedule
    (which `PlateauSchedule` lowers by assignment), a Keras schedule for cosine.

    Cosine decays from `learning_rate` at step 0 to `min_learning_rate` at
    `train_steps`, read off the optimiser's own step count, which the checkpoint holds,
    so a resumed run picks up the curve where it stopped.
    """
    if config.lr_schedule == "plateau":
        return config.learning_rate
    if config.lr_schedule == "cosine":
        floor = min(config.min_learning_rate, config.learning_rate)
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.train_steps,
            alpha=floor / config.learning_rate if config.learning_rate else 0.0)
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected plateau or cosine")


def make_optimizer(config, *, loss_scale: bool = False):
    """The run's optimiser: SGD with momentum (the paper) or AdamW, both with decoupled
    weight decay on kernels only (biases are not decayed, as in AlexNet-style training).

    Args:
      config: a `TrainConfig` (optimizer, learning-rate and decay settings).
      loss_scale: Wrap it in a `LossScaleOptimizer` (float16 compute).
    """
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
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer


def current_learning_rate(optimizer) -> float:
    """The learning rate the optimiser applies now (either kind of schedule)."""
    return float(np.asarray(optimizer.learning_rate))


def step_counter() -> tf.Variable:
    """The run's step: incremented once per applied step, checkpointed as `step`."""
    # A plain tf.Variable: Keras variables' assign_add is not atomic under
    # asynchronous parameter-server updates (optimizer.iterations undercounts).
    return tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class PlateauSchedule(tf.Module):
    """The paper's rule: learning rate x0.1 after `patience` validations without a better
    clip Hit@1, never below `floor`.

    Its state (`best`, `wait`) is tracked by the run's checkpoint (as `plateau`), so
    a resumed run keeps counting where it stopped. With `lowers=False` (the cosine
    schedule) the state is still kept but the learning rate is left alone.
    """

    def __init__(self, patience: int, floor: float, *, lowers: bool = True):
        super().__init__(name="plateau")
        self.best = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="plateau_best")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_wait")
        self._patience, self._floor, self._lowers = patience, floor, lowers

    def update(self, hit_at_1: float, optimizer) -> float | None:
        """Counts one validation; returns the lowered learning rate, or None if unchanged."""
        if hit_at_1 > float(self.best.numpy()):
            self.best.assign(hit_at_1)
            self.wait.assign(0)
        else:
            self.wait.assign_add(1)
        if not self._lowers or int(self.wait.numpy()) < self._patience:
            return None
        lowered = max(current_learning_rate(optimizer) * 0.1, self._floor)
        optimizer.learning_rate.assign(lowered)
        self.wait.assign(0)
        return lowered


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
      xla: XLA-compile the forward and backward pass.

    Returns:
      A `tf.function` `train_step(iterator) -> (loss, input_seconds)`: loss a
      float32 scalar (NaN when the step was skipped), input_seconds a float64
      scalar, the seconds the step waited for its batch; `iterator` yields
      `(frames, target)`.
    """
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
        frames, target, input_seconds = _timed_next(iterator)
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
        return tf.where(finite, loss, tf.constant(float("nan"))), input_seconds

    return train_step


def _timed_next(iterator):
    """`(frames, target, seconds)`: the next batch and the seconds spent blocked on it.

    Timed inside the step's graph, so it measures the same wait under every
    strategy (a parameter-server worker's too, where no Python code runs) and
    whatever the iterator is (a local pipeline, tf.data service). Two host
    timestamps a step cost microseconds.
    """
    started = tf.timestamp()
    with tf.control_dependencies([started]):
        frames, target = next(iterator)
    with tf.control_dependencies(tf.nest.flatten((frames, target), expand_composites=True)):
        seconds = tf.timestamp() - started
    return frames, target, seconds
