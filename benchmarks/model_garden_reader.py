"""Times the TensorFlow Model Garden video reader on clip records (run in ITS virtualenv).

Called by benchmarks/input_pipeline.py --model_garden_python=VENV/bin/python, which
alternates it with our pipeline. tf-models-official 2.20 pins TensorFlow 2.20, so
it lives in its own virtualenv:
  python -m venv /tmp/mgvenv && /tmp/mgvenv/bin/pip install tf-models-official==2.20.0
  /tmp/mgvenv/bin/python benchmarks/model_garden_reader.py --pattern='/tmp/r/bench-*' \
      --frames=10 --seconds=4
The reader is built as `official.vision.tasks.video_classification.build_inputs`
does (Decoder + Parser + PostBatchProcessor through `input_reader_factory`), in
training mode, on 170×170 crops of `frames` consecutive frames; min_image_size is
set to the stored 200 so that it does not upscale frames before cropping.
Prints `clips_per_s=WALL,PER_CPU_SECOND`.
"""
import time

import tensorflow as tf
from absl import app, flags
from official.vision.configs import video_classification as video_cfg
from official.vision.dataloaders import input_reader_factory, video_input

FLAGS = flags.FLAGS
flags.DEFINE_string("pattern", None, "Glob of the clip records.", required=True)
flags.DEFINE_integer("frames", 10, "Frames per clip.")
flags.DEFINE_integer("size", 170, "Crop size.")
flags.DEFINE_integer("batch_size", 32, "Clips per batch.")
flags.DEFINE_float("seconds", 4.0, "Measuring time.")


def main(argv):
    del argv
    params = video_cfg.DataConfig(
        input_path=FLAGS.pattern, feature_shape=(FLAGS.frames, FLAGS.size, FLAGS.size, 3),
        temporal_stride=1, is_training=True, num_classes=487,
        global_batch_size=FLAGS.batch_size, cycle_length=8, min_image_size=200)
    decoder = video_input.Decoder(image_key=params.image_field_key,
                                  label_key=params.label_field_key)
    parser = video_input.Parser(input_params=params, image_key=params.image_field_key,
                                label_key=params.label_field_key)
    reader = input_reader_factory.input_reader_generator(
        params, dataset_fn=tf.data.TFRecordDataset, decoder_fn=decoder.decode,
        parser_fn=parser.parse_fn(params.is_training),
        postprocess_fn=video_input.PostBatchProcessor(params))
    iterator = iter(reader.read())
    for _ in range(3):
        next(iterator)
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:  # as benchmarks/input_pipeline.py warms up
        next(iterator)
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < FLAGS.seconds:
        next(iterator)
        steps += 1
    clips = steps * FLAGS.batch_size
    print(f"clips_per_s={clips / (time.perf_counter() - start):.1f},"
          f"{clips / (time.process_time() - cpu):.1f}")


if __name__ == "__main__":
    app.run(main)
