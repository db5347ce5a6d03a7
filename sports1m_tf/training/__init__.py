"""Training: the `sports1m-train`, `sports1m-finetune` and `sports1m-data-service` commands,
the loop, optimisation, summaries and transfer learning (no TensorFlow at import)."""
