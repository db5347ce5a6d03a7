"""Training input through tf.data service against the local pipeline: clips/s and the trainer's CPU.

Writes the input-pipeline benchmark's records (16 frames of 200×200 JPEG a clip),
then reads training batches (`clip_dataset`, random crop 170 + flip) for 1 frame
(single_frame) and 10 frames (slow_fusion) a clip:
  * locally, in this process;
  * through tf.data service with 1, then 2 worker processes
    (`sports1m-data-service`, dispatcher and workers on 127.0.0.1).
For each: clips/s (wall), the trainer's (this process's) CPU seconds per clip,
and the workers' CPU seconds per clip (from /proc).

On a machine with few cores this measures the service's overhead and how much
of the decoding leaves the trainer, NOT scale-out: local workers share the same
cores as the trainer, so more of them cannot add capacity. Scale-out needs
workers on other machines; its capacity is the workers' clips per CPU-second
times their cores.

Run (≈2–3 minutes, most of it starting TensorFlow in the server processes):
  nice -n 5 python benchmarks/data_service.py
  python benchmarks/data_service.py --seconds=10     # longer, steadier
Writes benchmarks/results/data_service.json.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl import flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import input_pipeline  # noqa: E402  (its records and its flags)

import common

FLAGS = flags.FLAGS
flags.DEFINE_float("server_start_timeout", 120.0, "Seconds to wait for a server to listen.")
# (label, model): the model sets the frames read.
CONFIGS = (("1 frame (single_frame)", "single_frame"), ("10 frames (slow_fusion)", "slow_fusion"))
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "data_service.json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Servers:
    """Dispatcher and worker processes of `sports1m-data-service`, stopped at exit."""

    def __init__(self, folder: str):
        self.folder, self.procs, self.workers = folder, [], []
        self.port = _free_port()
        self.target = f"grpc://127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        err = open(os.path.join(self.folder, f"{name}.err"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "sports1m_tf.training.data_service", *args],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        proc.log = err.name
        self.procs.append(proc)
        return proc

    def wait_listening(self, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + FLAGS.server_start_timeout
        while "listening on" not in open(proc.log).read():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{open(proc.log).read()[-2000:]}")
            time.sleep(0.2)

    def start_dispatcher(self) -> subprocess.Popen:
        return self._start("dispatcher", ["--role=dispatcher", f"--port={self.port}"])

    def start_worker(self) -> subprocess.Popen:
        proc = self._start(f"worker{len(self.workers)}",
                           ["--role=worker", f"--dispatcher=127.0.0.1:{self.port}",
                            "--worker_host=127.0.0.1"])
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def measure(dataset, workers: list[subprocess.Popen]) -> dict:
    """clips/s, trainer and worker CPU seconds per clip while reading `dataset`."""
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: pipeline start, first files
        next(iterator)
    batches, wall, cpu = 0, time.perf_counter(), time.process_time()
    worker_cpu = sum(_cpu_seconds(w.pid) for w in workers)
    while time.perf_counter() - wall < FLAGS.seconds:
        next(iterator)
        batches += 1
    clips = batches * FLAGS.batch_size
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    worker_cpu = sum(_cpu_seconds(w.pid) for w in workers) - worker_cpu
    return {"clips_per_s": round(clips / wall, 1),
            "trainer_cpu_ms_per_clip": round(1000 * cpu / clips, 3),
            "worker_cpu_ms_per_clip": round(1000 * worker_cpu / clips, 3) if workers else None,
            "clips": clips}


def run_all(folder: str) -> list[dict]:
    from sports1m_tf.data import clip_dataset
    from sports1m_tf.data import service as data_service

    pattern, _ = input_pipeline.write_records(folder, FLAGS.clips)
    shared = dict(training=True, batch_size=FLAGS.batch_size, num_classes=487)
    rows = []
    servers = Servers(folder)
    try:
        # The servers start (importing TensorFlow) while the local pipeline is timed.
        dispatcher, first = servers.start_dispatcher(), servers.start_worker()
        for label, model in CONFIGS:
            dataset = clip_dataset(pattern, model=model, repeat=-1, seed=0, **shared)
            rows.append({"config": label, "mode": "local", **measure(dataset, [])})
            logging.info("%s", rows[-1])
        for proc in (dispatcher, first):
            servers.wait_listening(proc)
        for count in (1, 2):
            if count == 2:
                servers.wait_listening(servers.start_worker())
            for label, model in CONFIGS:
                dataset = data_service.service_training_dataset(
                    pattern, service=servers.target, seed=0, model=model,
                    job_name=f"bench-{model}-{count}", **{k: v for k, v in shared.items()
                                                         if k != "training"})
                rows.append({"config": label, "mode": f"service, {count} worker(s)",
                             **measure(dataset, servers.workers)})
                logging.info("%s", rows[-1])
    finally:
        servers.stop()
    return rows


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="bench_service_") as folder:
        rows = run_all(folder)
    for row in rows:
        local = next(r for r in rows if r["config"] == row["config"] and r["mode"] == "local")
        row["trainer_cpu_vs_local"] = round(row["trainer_cpu_ms_per_clip"]
                                            / local["trainer_cpu_ms_per_clip"], 3)
    result = {"cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
              "batch_size": FLAGS.batch_size, "seconds_per_run": FLAGS.seconds,
              "note": "local workers share this machine's cores with the trainer: the figures "
                      "show the service's overhead and the decoding that leaves the trainer, "
                      "not scale-out",
              "rows": rows}
    common.write_results(FLAGS.output, result, indent=2)
    common.print_table(
        ["config", "mode", "clips/s", "trainer CPU ms/clip", "worker CPU ms/clip",
         "trainer vs local"],
        ([r["config"], r["mode"], f"{r['clips_per_s']:.0f}",
          f"{r['trainer_cpu_ms_per_clip']:.2f}",
          "" if r["worker_cpu_ms_per_clip"] is None else f"{r['worker_cpu_ms_per_clip']:.2f}",
          f"{r['trainer_cpu_vs_local']:.2f}"] for r in rows), text_columns=2)


def run():
    common.run(main, output=OUTPUT, clips=256, seconds=6.0)


if __name__ == "__main__":
    run()
