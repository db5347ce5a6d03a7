"""`Dataset.map` whose function runs its ops one after another in the calling thread.

`Dataset.map` runs its function on TensorFlow's multi-threaded executor: each
call hands the function's first ops to the inter-op thread pool and waits for
them, a thread hand-off per element (futex wake-ups, context switches) that
costs more than most of the small ops in a per-clip map. The single-threaded
executor runs the ops in the thread that calls the function; a parallel map
still runs many calls at once. tf.data uses it for its own internal maps, but
`Dataset.map` has no argument for it, so this builds the same dataset ops with
`use_inter_op_parallelism=False` (TensorFlow's own map classes, falling back to
`Dataset.map` where they are missing).

The single-threaded executor runs no low-level control flow: the function must
not contain `tf.cond`, `tf.while_loop` or `tf.map_fn` (unroll static loops,
select with `tf.where`).
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

try:  # TensorFlow's map datasets, which take the executor choice
    from tensorflow.python.data.ops import map_op as _map_op
except ImportError:  # pragma: no cover - a TensorFlow without that module
    _map_op = None


def inline_map(ds: tf.data.Dataset, fn: Callable, *, parallel: bool,
               deterministic: bool | None = None) -> tf.data.Dataset:
    """`ds.map(fn)` (parallel: AUTOTUNE calls at once) on the single-threaded executor.

    Args:
      ds: the input dataset.
      fn: the map function; no control flow inside (see the module docstring).
      parallel: bool. A parallel map (AUTOTUNE) or one call at a time in the
        thread that pulls from the dataset (e.g. inside an interleaved reader).
      deterministic: bool or None. Output order of a parallel map, as in `Dataset.map`.

    Returns:
      The mapped dataset.
    """
    classes = ("_ParallelMapDataset", "_MapDataset")
    if _map_op is None or not all(hasattr(_map_op, c) for c in classes):
        if parallel:
            return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        return ds.map(fn, synchronous=True)
    if parallel:
        return _map_op._ParallelMapDataset(  # pylint: disable=protected-access
            ds, fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic,
            use_inter_op_parallelism=False, preserve_cardinality=True)
    # Synchronous: tf.data would otherwise make a stateless map parallel.
    return _map_op._MapDataset(  # pylint: disable=protected-access
        ds, fn, force_synchronous=True, use_inter_op_parallelism=False,
        preserve_cardinality=True)
