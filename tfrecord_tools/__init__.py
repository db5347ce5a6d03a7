"""Videos to clip TFRecords (docs/design.md). Imports no TensorFlow at package import."""
