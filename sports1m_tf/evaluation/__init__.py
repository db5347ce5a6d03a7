"""Evaluation: the `sports1m-eval` command, video-level scores over clip records, reports
and figures (no TensorFlow at import)."""
