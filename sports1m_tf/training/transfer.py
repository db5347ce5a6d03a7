"""Transfer learning (docs/design.md): a trained model → a model to fine-tune.

Four regimes, for every model family (multires included):

| regime    | starts from                      | trained                        | dropout (rate) before       |
| --------- | -------------------------------- | ------------------------------ | --------------------------- |
| `top1`    | source weights, new classifier   | `predictions`                  | `predictions`               |
| `top3`    | source weights, new classifier   | `fc6`, `fc7`, `predictions`    | `fc6`, `fc7`, `predictions` |
| `all`     | source weights, new classifier   | every layer                    | `fc6`, `fc7`, `predictions` |
| `scratch` | random init, same architecture   | every layer                    | `fc6`, `fc7`, `predictions` |

Choices the paper leaves open (docs/transfer.md):
- `top3` starts from the source's fc6/fc7 ("We initialize with a fully trained
  Sports CNN and then begin training the top 3 layers"); only the classifier is
  new, since the target has other classes.
- `top1` treats the network as a fixed feature extractor: no dropout anywhere
  below the classifier (the features seen in training are those seen at test),
  dropout before the classifier only.
- Dropout goes before every retrained FULLY-CONNECTED layer; convolutions never
  had dropout in the paper's network and get none here. `all` and `scratch` use
  the same dropout as `top3`, so the regimes differ only in what starts from
  the source and what is frozen.
- Frozen layers have `trainable = False`: `model.trainable_variables`, and so
  the optimizer and its decoupled weight decay, never see them. The network has
  no BatchNorm; dropout has no state worth keeping.

Checkpoint compatibility. The dropout before `fc6` is fused into the `fc6` layer
(`InputDropoutDense`, a Dense that drops its inputs while training) instead of
being a layer of its own: a `tf.train.Checkpoint` of a Keras functional model
names variables by the index of their layer, so an extra layer would shift every
later index and a fine-tuned run's checkpoints would no longer restore into
`build_model(...)` of its run config (what `sports1m-eval` and `sports1m-export`
build). With the fusion, the transfer model has exactly `build_model`'s layers,
in its order, with its variable names. `plain_model` gives the same weights in
`build_model`'s own classes, for `.keras` files that load without this module.

Example:
  >>> source = build_model("slow_fusion", 487, width=0.125, input_size=64)
  >>> model = make_transfer_model(source, "top3", num_classes=101)
  >>> trainable_layer_names(model)
  ['fc6', 'fc7', 'predictions']
"""
from __future__ import annotations

import keras

from sports1m_tf.models import build_model, describe
from sports1m_tf.models.trunk import FC_UNITS
from sports1m_tf.training.regimes import (  # noqa: F401  (part of this module's API)
    HEAD_LAYERS, PAPER_DROPOUT, REGIMES, RETRAINED)



@keras.saving.register_keras_serializable(package="sports1m_tf")
class InputDropoutDense(keras.layers.Dense):
    """A Dense layer that applies dropout to its INPUT while training.

    Same variables (and variable names) as `keras.layers.Dense`, so weights and
    checkpoints move freely between the two.

    Args:
      input_dropout: Fraction of input units dropped while training.
        Defaults to 0.
      **kwargs: as `keras.layers.Dense`.
    """

    def __init__(self, units: int, input_dropout: float = 0.0, seed: int | None = None,
                 **kwargs):
        super().__init__(units, **kwargs)
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.input_dropout = float(input_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if training and self.input_dropout > 0:
            inputs = keras.random.dropout(inputs, self.input_dropout, seed=self.seed_generator)
        return super().call(inputs, training=training)

    def get_config(self):
        return {**super().get_config(), "input_dropout": self.input_dropout, "seed": self.seed}


def _check_regime(regime: str) -> None:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")


def head_dropout(regime: str, dropout: float = PAPER_DROPOUT) -> dict[str, float]:
    """Dropout rate before each fully-connected layer in a regime.

    Returns:
      `{"fc6": rate, "fc7": rate, "predictions": rate}`: the rate applied to
      the input of that layer while training.
    """
    _check_regime(regime)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if regime == "top1":
        return {"fc6": 0.0, "fc7": 0.0, "predictions": dropout}
    return {name: dropout for name in HEAD_LAYERS}


def infer_width(model: keras.Model) -> float:
    """The width multiplier a `build_model` model was built with, from its fc6 size."""
    return model.get_layer("fc6").units / FC_UNITS


def _layers_with_weights(model: keras.Model) -> dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def _check_shapes(source: keras.Model, target: keras.Model, skip: tuple[str, ...]) -> None:
    from_layers = _layers_with_weights(source)
    for name, layer in _layers_with_weights(target).items():
        if name in skip:
            continue
        have = [tuple(w.shape) for w in from_layers[name].weights] if name in from_layers else None
        if have != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"layer {name!r} of the rebuilt {target.name!r} does not match "
                             f"the source model (another width or input size?)")


def copy_weights(source: keras.Model, target: keras.Model, skip: tuple[str, ...] = ()) -> list[str]:
    """Copies weights layer by layer, matching layers by name.

    Args:
      source, target: models with the same layer names (built by `build_model`).
      skip: names of target layers to leave as they are.

    Returns:
      The names of the layers copied.

    Raises:
      ValueError: a layer of `target` is missing in `source` or has other shapes.
    """
    from_layers = _layers_with_weights(source)
    copied = []
    for name, layer in _layers_with_weights(target).items():
        if name in skip:
            continue
        if name not in from_layers:
            raise ValueError(f"source model {source.name!r} has no layer {name!r} to copy")
        values = from_layers[name].get_weights()
        shapes = [tuple(v.shape) for v in values]
        wanted = [tuple(w.shape) for w in layer.weights]
        if shapes != wanted:
            raise ValueError(f"layer {name!r}: source weights {shapes} do not fit {wanted} "
                             f"(another width or input size?)")
        layer.set_weights(values)
        copied.append(name)
    return copied


def _rebuild(source: keras.Model, num_classes: int, width: float | None,
             rates: dict[str, float]) -> keras.Model:
    """`build_model`'s architecture of `source` with a fresh head and the given dropout."""
    spec = describe(source)
    width = infer_width(source) if width is None else width
    base = build_model(spec["name"], num_classes, multires=spec["multires"], width=width,
                       input_size=spec["input_size"], dropout=0.0,
                       input_scale=spec["input_scale"])
    # The head, layer for layer as `apply_head` makes it, but the dropout before
    # fc6 lives inside fc6 (see the module docstring: checkpoint compatibility).
    x = base.get_layer("fc6").input
    units = base.get_layer("fc6").units
    x = InputDropoutDense(units, input_dropout=rates["fc6"], activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(rates["fc7"], name="fc6_dropout")(x)
    x = keras.layers.Dense(units, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(rates["predictions"], name="fc7_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    # One input tensor, as build_model makes it: a list would make Keras warn at every
    # call with a plain tensor.
    model = keras.Model(base.input, outputs, name=base.name)
    if [layer.name for layer in model.layers] != [layer.name for layer in base.layers]:
        raise RuntimeError("the transfer head no longer mirrors build_model's layers "
                           "(sports1m_tf.models.trunk.apply_head changed?): checkpoints "
                           "would not restore across the two")
    return model


def make_transfer_model(source: keras.Model, regime: str, num_classes: int,
                        dropout: float = PAPER_DROPOUT, *,
                        width: float | None = None) -> keras.Model:
    """Builds the model to fine-tune from a trained source model.

    Call it inside the training strategy's scope: the new model's variables are
    created here; the source is only read (`get_weights`), never changed.

    Args:
      source: keras.Model. A model built by `sports1m_tf.models.build_model`
        (restored from a run or loaded from `.keras`), any family, multires or not.
      regime: `top1`, `top3`, `all` or `scratch` (see the module docstring).
      num_classes: Classes of the target task (the classifier is always new).
      dropout: Rate before every retrained fully-connected layer.
        Defaults to 0.9 (the paper: keep probability 0.1).
      width: The source's width multiplier; inferred from its fc6
        size when None.

    Returns:
      A `keras.Model` with the source's name, input (uint8
      `[batch, T, S, S, 3]`) and layer names, output softmax `[batch, num_classes]`,
      its frozen layers marked `trainable = False`.
    """
    _check_regime(regime)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    model = _rebuild(source, num_classes, width, head_dropout(regime, dropout))
    if regime == "scratch":
        _check_shapes(source, model, skip=("predictions",))
    else:
        copy_weights(source, model, skip=("predictions",))
    retrained = RETRAINED[regime]
    if retrained is not None:
        for layer in model.layers:
            layer.trainable = layer.name in retrained
    return model


def trainable_layer_names(model: keras.Model) -> list[str]:
    """Names of the layers whose weights training updates, in model order."""
    trainable = {id(v) for v in model.trainable_variables}
    return [layer.name for layer in model.layers
            if layer.weights and any(id(w) in trainable for w in layer.weights)]


def frozen_layer_names(model: keras.Model) -> list[str]:
    """Names of the layers that have weights and none of them trainable, in model order."""
    trainable = set(trainable_layer_names(model))
    return [layer.name for layer in model.layers if layer.weights and layer.name not in trainable]


def plain_model(model: keras.Model, dropout: float = 0.5, *,
                width: float | None = None) -> keras.Model:
    """The same weights in `build_model`'s own architecture (plain Dense, fixed dropout).

    At inference the two models compute the same function; the plain one saves
    to a `.keras` file that any tool of the package loads without this module.

    Args:
      model: a model from `make_transfer_model` (or any `build_model` model).
      dropout: The plain model's dropout after fc6 and fc7.
      width: Width multiplier, inferred when None.

    Returns:
      A `build_model` model holding `model`'s weights, every layer trainable.
    """
    spec = describe(model)
    plain = build_model(spec["name"], spec["num_classes"], multires=spec["multires"],
                        width=infer_width(model) if width is None else width,
                        input_size=spec["input_size"], dropout=dropout,
                        input_scale=spec["input_scale"])
    copy_weights(model, plain)
    return plain
