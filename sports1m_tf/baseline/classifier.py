"""The baseline's classifier: a ReLU MLP with dropout and softmax, and its small search.

Inputs are standardised inside the model (a `Normalization` layer holding the
training mean and variance, the variance floored so that words nearly absent in
training cannot blow up), so a saved model takes raw video vectors. Targets are
the uniform distribution over a video's labels (multi-label videos; docs/design.md, "Clip records").
Adam, early stopping on the validation loss (best weights restored); the search
picks the configuration with the best validation video Hit@1 (ties: lower loss).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import keras
import numpy as np
from absl import logging

from sports1m_tf import metrics


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """One point of the search.

    Args:
      hidden: widths of the hidden layers (1 or 2 in the paper's spirit).
      dropout: Rate after each hidden layer.
    """
    hidden: tuple[int, ...] = (512,)
    dropout: float = 0.5
    learning_rate: float = 1e-3


def grid(hidden: Sequence[Sequence[int]], dropout: Sequence[float],
         learning_rate: Sequence[float]) -> list[MLPConfig]:
    """Every combination of the given values."""
    return [MLPConfig(tuple(h), d, lr) for h, d, lr in itertools.product(hidden, dropout,
                                                                         learning_rate)]


def soft_targets(label_lists: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """float32 [N, C]: uniform over each row's labels."""
    hot = metrics.multi_hot(label_lists, num_classes).astype(np.float32)
    return hot / np.maximum(hot.sum(1, keepdims=True), 1.0)


def build_mlp(train_vectors: np.ndarray, num_classes: int, config: MLPConfig) -> keras.Model:
    """The MLP, its input standardisation fitted on `train_vectors`.

    Args:
      train_vectors: float32 [N, D]. Training video vectors (for mean/variance).
      config: widths, dropout, learning rate.

    Returns:
      A compiled keras.Model: float32 [batch, D] → softmax float32 [batch, C].
    """
    mean = train_vectors.mean(0)
    variance = train_vectors.var(0)
    variance = np.maximum(variance, 0.01 * variance.mean() + 1e-12)
    inputs = keras.Input((train_vectors.shape[1],), name="video_vector")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="standardise")(inputs)
    for i, width in enumerate(config.hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"hidden{i + 1}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"hidden{i + 1}_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    model = keras.Model(inputs, outputs, name="feature_histogram_mlp")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss="categorical_crossentropy")
    return model


def train(config: MLPConfig, x_train: np.ndarray, y_train: Sequence[Sequence[int]],
          x_val: np.ndarray, y_val: Sequence[Sequence[int]], num_classes: int, *,
          epochs: int = 200, batch_size: int = 64, patience: int = 20,
          seed: int = 0) -> tuple[keras.Model, dict]:
    """Trains one configuration with early stopping on the validation loss.

    Returns:
      (model with the best weights, {"config", "epochs", "val_loss", "val_hit_at_1",
      "val_hit_at_5"}).
    """
    keras.utils.set_random_seed(seed)
    model = build_mlp(x_train, num_classes, config)
    stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    history = model.fit(x_train, soft_targets(y_train, num_classes), batch_size=batch_size,
                        epochs=epochs, verbose=0, shuffle=True, callbacks=[stop],
                        validation_data=(x_val, soft_targets(y_val, num_classes)))
    probs = model.predict(x_val, batch_size=256, verbose=0)
    result = {"config": dataclasses.asdict(config), "epochs": len(history.history["loss"]),
              "val_loss": float(min(history.history["val_loss"])),
              "val_hit_at_1": metrics.hit_at_k(probs, y_val, 1),
              "val_hit_at_5": metrics.hit_at_k(probs, y_val, min(5, num_classes))}
    return model, result


def search(configs: Sequence[MLPConfig], x_train: np.ndarray, y_train, x_val: np.ndarray,
           y_val, num_classes: int, **train_kwargs) -> tuple[keras.Model, list[dict]]:
    """Trains every configuration; keeps the best on validation Hit@1 (ties: lower loss).

    Returns:
      (best model, one result dict per configuration, in `configs` order, the
      chosen one with "chosen": True).
    """
    best, best_key, results = None, None, []
    for i, config in enumerate(configs):
        model, result = train(config, x_train, y_train, x_val, y_val, num_classes,
                              **train_kwargs)
        logging.info("search %d/%d %s: val Hit@1 %.3f, val loss %.4f, %d epochs", i + 1,
                     len(configs), config, result["val_hit_at_1"], result["val_loss"],
                     result["epochs"])
        results.append(result)
        key = (result["val_hit_at_1"], -result["val_loss"])
        if best_key is None or key > best_key:
            best, best_key, chosen = model, key, i
    results[chosen]["chosen"] = True
    return best, results
