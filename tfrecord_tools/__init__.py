"""Videos to clip TFRecords (SPEC §2). Imports no TensorFlow at package import."""
