"""What a decompression bomb costs a served model: refused by the bound, or decoded.

A request of 40 clips of 64x64 JPEG frames, one of whose frames is 629 bytes
whose header claims 13000x13000, sent to `predict_video_jpeg` of a tiny exported
model (single frame, width 0.0625), in this process: its CPU time and the growth
of the peak memory. Then the same frame decoded by `tf.io.decode_jpeg`, which is
what the graph did with it before it read frame sizes from the headers.

  python benchmarks/serving_bounds.py      # writes benchmarks/results/serving_bounds.json
"""
from __future__ import annotations

import tempfile

import numpy as np
from absl import flags

import common

FLAGS = flags.FLAGS
common.define_output("serving_bounds")
flags.DEFINE_integer("claimed_side", 13000, "Side the bomb's JPEG header claims.")
flags.DEFINE_integer("clips", 40, "Clips in the request.")


def claiming(tf, side: int) -> bytes:
    """A real 8x8 JPEG whose frame header (SOF0) claims side x side."""
    data = bytearray(tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


def measure(call) -> dict:
    """Peak-memory growth (MB) and CPU seconds of `call()`, and what it answered."""
    before, watch = common.peak_rss_mb(), common.Stopwatch()
    with watch.running():
        try:
            call()
            answer = "answered"
        except Exception as e:  # noqa: BLE001 - the refusal is the expected answer
            answer = f"refused: {type(e).__name__}"
    return {"answer": answer, "peak_growth_mb": round(common.peak_rss_mb() - before, 1),
            "cpu_seconds": round(watch.cpu, 3)}


def main(argv) -> None:
    del argv
    import tensorflow as tf

    from export.saved_model import export_model
    from sports1m_tf.models import build_model
    model = build_model("single_frame", 3, width=0.0625, input_size=32)
    version = export_model(model, tempfile.mkdtemp(), "tiny", class_names=["a", "b", "c"],
                           warmup=False)
    served = tf.saved_model.load(version).signatures["predict_video_jpeg"]
    good = tf.io.encode_jpeg(np.random.default_rng(0).integers(0, 256, (64, 64, 3),
                                                                np.uint8)).numpy()
    bomb = claiming(tf, FLAGS.claimed_side)
    request = np.array([[good] * 16] * FLAGS.clips, dtype=object)
    served(jpeg_frames=tf.constant(request))  # warm: the first call traces
    request[3, 8] = bomb
    result = {"bomb_bytes": len(bomb), "claimed": [FLAGS.claimed_side] * 2,
              "clips": FLAGS.clips,
              "served_request": measure(lambda: served(jpeg_frames=tf.constant(request))),
              "decoded_without_the_bound": measure(lambda: tf.io.decode_jpeg(bomb)),
              "machine": common.machine_load()}
    print(result)
    common.write_results(FLAGS.output, result)


if __name__ == "__main__":
    common.run(main)
