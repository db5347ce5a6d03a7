"""Motion-study diagnosis: one paper model, one recipe, synthetic videos held in memory.

    python benchmarks/motion_diagnosis.py --model=slow_fusion --optimizer=sgd \
        --learning_rate=1e-3 --input_scale=1 --videos_per_class=500 --steps=1500
    python benchmarks/motion_diagnosis.py --model=slow_fusion --optimizer=adam \
        --learning_rate=3e-4 --input_scale=0.015625 --weight_decay=0 --steps=2500

Why it exists: the motion study (`motion_study.py`) goes through videos, the
converter, TFRecords and `clip_dataset`; when a model stays at chance there,
this script takes the files and the input pipeline out of the question. It
renders the motion classes with `sports1m_tf.synthetic.render_video` straight
into memory (no codec), samples training clips as the pipeline does (a random
16-frame window, the model's frames of it, one random crop and flip per clip),
trains `build_model`'s network with the training command's optimiser
(`optimization.make_optimizer`) and reports, every --eval_every steps, the training
loss and the test video Hit@1 (2 clips x {centre, centre flipped} per video),
then the test confusion matrix. Rendered videos are cached in --cache_dir.

Figures from it are in docs/studies/motion.md ("What was learnt").
"""
from __future__ import annotations

import json
import os
import time
from typing import Sequence

from absl import flags

from sports1m_tf import cli

from sports1m_tf import cpu_kernels

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("model", "slow_fusion", "A build_model name.")
    flags.DEFINE_string("classes", "motion", "Synthetic class set or names.")
    flags.DEFINE_integer("videos_per_class", 500, "Videos per class (60% train, last 20% test).")
    flags.DEFINE_integer("video_size", 64, "Rendered frame size.")
    flags.DEFINE_integer("input_size", 56, "Crop size.")
    flags.DEFINE_float("width", 0.25, "Width multiplier.")
    flags.DEFINE_float("dropout", 0.5, "Dropout after fc6 and fc7.")
    flags.DEFINE_enum("optimizer", "adam", ["sgd", "adam"], "sports1m-train --optimizer.")
    flags.DEFINE_float("learning_rate", 3e-4, "Learning rate.")
    flags.DEFINE_float("weight_decay", 5e-4, "Decoupled weight decay (0: plain Adam).")
    flags.DEFINE_float("input_scale", 1 / 64, "build_model input_scale (paper: 1).")
    flags.DEFINE_enum("kernel_init", "glorot_uniform", ["glorot_uniform", "he_normal"],
                      "build_model kernel_init (the figures in docs/studies/motion.md: Glorot).")
    flags.DEFINE_integer("steps", 2500, "Optimiser steps.")
    flags.DEFINE_integer("batch_size", 32, "Clips per step.")
    flags.DEFINE_integer("eval_every", 500, "Steps between test evaluations.")
    flags.DEFINE_integer("seed", 0, "Data and initialisation seed.")
    flags.DEFINE_string("cache_dir", "/tmp/sports1m_motion_diagnosis", "Rendered videos.")
    flags.DEFINE_string("output", None, "Append the result as one JSON line to this file.")


NUM_FRAMES, CLIP_FRAMES = 32, 16


def rendered(names: Sequence[str]):
    """uint8 RGB videos [N, 32, S, S, 3] and class indices [N], cached as .npz."""
    import numpy as np

    from sports1m_tf import synthetic

    path = os.path.join(FLAGS.cache_dir, f"{'-'.join(names)}_{FLAGS.video_size}_"
                                         f"{FLAGS.videos_per_class}_{FLAGS.seed}.npz")
    if not os.path.exists(path):
        videos, labels = [], []
        for c, name in enumerate(names):
            for i in range(FLAGS.videos_per_class):
                rng = np.random.default_rng([FLAGS.seed, i] + list(name.encode()))
                frames, _ = synthetic.render_video(name, num_frames=NUM_FRAMES,
                                                   size=FLAGS.video_size, centre_bias=True,
                                                   rng=rng)
                videos.append(frames[..., ::-1])  # BGR -> RGB, as the converter stores
                labels.append(c)
        os.makedirs(FLAGS.cache_dir, exist_ok=True)
        np.savez(path + ".tmp.npz", videos=np.stack(videos), labels=np.asarray(labels))
        os.replace(path + ".tmp.npz", path)
    with np.load(path) as f:
        return f["videos"], f["labels"]


def main(argv: Sequence[str]) -> None:
    del argv
    cpu_kernels.prefer_onednn()
    import keras
    import numpy as np
    import tensorflow as tf

    from sports1m_tf import synthetic
    from sports1m_tf.training import optimization, train
    from sports1m_tf.models import build_model, frames_needed

    names = synthetic.resolve_classes(FLAGS.classes)
    videos, labels = rendered(names)
    index = np.arange(len(labels)) % FLAGS.videos_per_class
    train_videos = tf.constant(videos[index < int(0.6 * FLAGS.videos_per_class)])
    train_labels = tf.constant(labels[index < int(0.6 * FLAGS.videos_per_class)])
    test = index >= int(0.8 * FLAGS.videos_per_class)
    test_videos, test_labels = videos[test], labels[test]

    keras.utils.set_random_seed(FLAGS.seed)
    size, crop, batch = FLAGS.video_size, FLAGS.input_size, FLAGS.batch_size
    model = build_model(FLAGS.model, len(names), width=FLAGS.width, input_size=crop,
                        dropout=FLAGS.dropout, input_scale=FLAGS.input_scale,
                        kernel_init=FLAGS.kernel_init)
    frames = tf.constant(frames_needed(FLAGS.model, CLIP_FRAMES))
    config = train.make_config(model_dir="unused", train_files=["unused"],
                               optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
                               weight_decay=FLAGS.weight_decay)
    optimizer = optimization.make_optimizer(config)
    generator = tf.random.Generator.from_seed(FLAGS.seed)

    @tf.function
    def step():
        # One window, crop and flip per clip, as clip_dataset does.
        uniform = lambda high: generator.uniform([batch], 0, high, tf.int32)
        which, start = uniform(train_videos.shape[0]), uniform(NUM_FRAMES - CLIP_FRAMES + 1)
        top, left = uniform(size - crop + 1), uniform(size - crop + 1)
        flip = generator.uniform([batch]) < 0.5
        clips = tf.gather(tf.gather(train_videos, which), start[:, None] + frames[None],
                          batch_dims=1)
        clips = tf.gather(clips, top[:, None] + tf.range(crop), axis=2, batch_dims=1)
        clips = tf.gather(clips, left[:, None] + tf.range(crop), axis=3, batch_dims=1)
        clips = tf.where(flip[:, None, None, None, None], tf.reverse(clips, [3]), clips)
        targets = tf.one_hot(tf.gather(train_labels, which), len(names))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
                targets, model(clips, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def evaluate():
        offset, probs = (size - crop) // 2, 0.0
        for start in (0, CLIP_FRAMES):
            clips = test_videos[:, start + frames.numpy(), offset:offset + crop,
                                offset:offset + crop]
            for view in (clips, clips[:, :, :, ::-1]):
                probs = probs + model.predict(view, batch_size=128, verbose=0)
        predicted = probs.argmax(axis=1)
        confusion = np.zeros((len(names), len(names)), int)
        np.add.at(confusion, (test_labels, predicted), 1)
        return float((predicted == test_labels).mean()), confusion

    started, losses, curve = time.time(), [], []
    for i in range(1, FLAGS.steps + 1):
        losses.append(float(step()))
        if i % FLAGS.eval_every == 0 or i == FLAGS.steps:
            hit, confusion = evaluate()
            curve.append({"step": i, "train_loss": float(np.mean(losses[-100:])),
                          "test_video_hit_at_1": hit})
            print(f"step {i}: training loss {curve[-1]['train_loss']:.3f}, "
                  f"test video Hit@1 {hit:.3f} ({time.time() - started:.0f} s)", flush=True)
    width = max(len(n) for n in names)
    print("confusion (rows: true class, columns: predicted, same order):")
    for name, row in zip(names, confusion):
        print(f"  {name:>{width}} " + " ".join(f"{n:4d}" for n in row))
    if FLAGS.output:
        settings = {k: FLAGS[k].value for k in (
            "model", "classes", "videos_per_class", "video_size", "input_size", "width",
            "dropout", "optimizer", "learning_rate", "weight_decay", "input_scale", "steps",
            "batch_size", "seed")}
        with open(FLAGS.output, "a") as f:
            f.write(json.dumps({"settings": settings, "curve": curve,
                                "confusion": confusion.tolist(), "classes": names}) + "\n")


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
