"""What the benchmark scripts share: the JSON results flag and file, and a stopwatch.

Figures are written to `benchmarks/results/NAME.json` (the docs quote them from
there) and speed is reported per wall second and per CPU second of this process:
on a shared machine the CPU figure is the one that reproduces.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from typing import Iterable, Iterator, Sequence

from absl import flags

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def define_output(name: str, help_text: str = "Where the JSON results go.") -> None:
    """Declares --output, by default `benchmarks/results/NAME.json`."""
    flags.DEFINE_string("output", os.path.join(RESULTS_DIR, name + ".json"), help_text)


def write_results(path: str, result: dict, *, indent: int = 2) -> str:
    """Writes `result` as JSON to `path` (atomically; folders created) and says where."""
    from tfrecord_tools import fileio
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fileio.write_text_atomic(path, json.dumps(result, indent=indent) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process (or its children), MB."""
    return resource.getrusage(who).ru_maxrss / 1024


class Stopwatch:
    """Wall and CPU seconds of this process over a `with` block (`.wall`, `.cpu`)."""
    wall = cpu = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator["Stopwatch"]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu

    def rates(self, items: float) -> dict:
        """Items per wall second and per CPU second."""
        return {"per_wall_second": items / max(self.wall, 1e-9),
                "per_cpu_second": items / max(self.cpu, 1e-9)}


def run(main, **defaults) -> None:
    """Runs a benchmark's `main` as a command (`sports1m_tf.cli.entry`), with flag defaults
    of its own for flags it shares with another script."""
    from sports1m_tf import cli
    for name, value in defaults.items():
        flags.FLAGS.set_default(name, value)
    cli.entry(main)()


def print_table(columns: Sequence[str], rows: Iterable[Sequence], *, text_columns: int = 1
                ) -> None:
    """Prints `rows` (already formatted cells) as a Markdown table, numbers right-aligned
    after the first `text_columns` columns, then the machine's load."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if i < text_columns else "---:" for i in range(len(columns)))
          + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print(load_line())


def load_line() -> str:
    """'load average L on N cores', printed under a table of figures."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def machine_load() -> dict:
    """The 1/5/15-minute load averages and the core count, recorded beside figures."""
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()}
