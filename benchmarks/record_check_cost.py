"""CPU cost of the per-record verdict (`record_check`) and the stream guards, in one process.

Alternating rounds of `clip_dataset` (training mode, crop 170, batch 32, 1 and
2 frames of 16 stored 200x200 JPEG frames, a dataset.json with 487 class names
so that every part of the check runs) in three variants:
  * `guarded`: as shipped (the verdict where each record is parsed, the
    stream's in-a-row and changed-file ends, the per-shard look at each pass);
  * `no verdict`: the same without the verdict (a plain gather of the frames);
  * `plain parse`: also without the three context features the verdict reads;
  * `before`: also with the skip counter of the code before the guards (`--before_errors`, a
    copy of the earlier `sports1m_tf/data/errors.py`), i.e. about the pipeline
    before them.
Prints clips per CPU-second (`time.process_time` of this process) per round and
the medians; the machine may be shared (say so where the figures are quoted).

  python benchmarks/record_check_cost.py --rounds=4 --seconds=3 \
      --before_errors=OLD_CHECKOUT/sports1m_tf/data/errors.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import tempfile

from absl import app, flags

import input_pipeline

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 4, "Alternating rounds of every variant.")
flags.DEFINE_list("models", ["single_frame", "late_fusion"], "Models (frames read) to time.")
flags.DEFINE_string("before_errors", None, "errors.py of the code before the guards "
                    "(the `before` variant is left out without it).")


def _variants():
    import tensorflow as tf

    from sports1m_tf.data import record_check, records
    from tfrecord_tools import schema
    shipped_frames, shipped_parse = record_check.sound_clip, records.parse_clip

    def plain_frames(clip, rules, indices, count=None, min_size=0):
        return tf.gather(clip["encoded"], indices), tf.io.extract_jpeg_shape(clip["encoded"][0])[:2]

    def plain_parse(record):
        context, sequence = tf.io.parse_single_sequence_example(
            record, context_features={schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
                                      schema.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)},
            sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
        return {"media_id": context[schema.MEDIA_ID], "labels": context[schema.LABEL_INDEX].values,
                "encoded": sequence[schema.IMAGE_ENCODED]}

    before = None
    if FLAGS.before_errors:
        spec = importlib.util.spec_from_file_location("errors_before", FLAGS.before_errors)
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)

    def counter(kind):
        if kind != "before":
            from sports1m_tf.data import ErrorCounter
            return ErrorCounter()
        c = before.ErrorCounter()
        c.read_watch = c.problem_counter = lambda binding: None
        return c

    def use(kind):
        record_check.sound_clip = shipped_frames if kind == "guarded" else plain_frames
        records.parse_clip = plain_parse if kind in ("plain parse", "before") else shipped_parse

    kinds = ["guarded", "no verdict", "plain parse"] + (["before"] if before else [])
    return kinds, use, counter


def main(argv):
    del argv
    from sports1m_tf.data import clip_dataset
    folder = tempfile.mkdtemp()
    pattern, _ = input_pipeline.write_records(folder, FLAGS.clips)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"classes": [str(i) for i in range(487)], "num_classes": 487}, f)
    kinds, use, counter = _variants()
    rates = {(k, m): [] for k in kinds for m in FLAGS.models}
    for round_ in range(FLAGS.rounds):
        for model in FLAGS.models:
            for kind in kinds:
                use(kind)
                ds = clip_dataset(pattern, model=model, training=True,
                                  batch_size=FLAGS.batch_size, num_classes=487, repeat=-1,
                                  error_counter=counter(kind))
                _, cpu_rate = input_pipeline._rate(iter(ds), FLAGS.batch_size, FLAGS.seconds)
                rates[kind, model].append(cpu_rate)
                print(f"round {round_} {model:12s} {kind:10s} {cpu_rate:7.0f} clips per CPU-s",
                      flush=True)
    print("medians (clips per CPU-second; µs of CPU per clip):")
    for (kind, model), values in rates.items():
        median = statistics.median(values)
        print(f"  {model:12s} {kind:10s} {median:7.0f}  {1e6 / median:6.0f} µs  "
              f"(range {min(values):.0f}-{max(values):.0f})")
    print("load average:", os.getloadavg())


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    app.run(main)
