"""Hostile requests to the served model, and faults around the writers, in real processes.

- The served graph bounds its work before it decodes: a 13000x13000 JPEG header,
  a frame of 60000x1, JPEG data cut short, too many clips, raw frames out of
  bounds; refused in the graph naming the [clip, frame] and the size, with the
  peak memory of the serving process measured around the hostile request.
- `sports1m-predict` applies the same bounds to video frames, and refuses
  impossible flags, folders and symbolic link loops with one line each.
- One writer per folder: an export of a name, or a conversion of a split, is
  refused at once while another process holds the folder's lock, and goes
  ahead once that holder is SIGKILLed and left unreaped (a zombie), whatever
  pid its lock file names.
- A full disk (a real 2 MB tmpfs; skipped, saying why, where mounting is not
  allowed) in convert, export and train: one line naming the path, no
  temporary file left, everything written before byte-identical.
- Manifest paths that climb out of the video folder are refused, naming the line.

Every command runs in a fresh process; the cases run side by side.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

tf = pytest.importorskip("tensorflow")

import testvideos as tv  # noqa: E402
from test_bad_input import REPO, checksums, command  # noqa: E402

CLASSES = ["a", "b", "c"]
SIZE = 32            # the model's input: frames with a shorter side below it are refused
BOUNDED = dict(max_frame_pixels=40_000, max_clips=3)   # small bounds: 200x200 frames only
PARALLEL = 4
SMALL = ["--model=single_frame", "--width=0.0625", f"--input_size={SIZE}", "--batch_size=2",
         "--dropout=0", "--strategy=one_device"]
TMPFS_BYTES = 2 * 1024 * 1024
FREE_BYTES = 48 * 1024   # left free on a "full" disk: less than any write below needs

# Runs in a fresh process: hostile requests to both SavedModels, the peak memory
# around the decompression bomb, and what each request answered.
SERVE_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import tensorflow as tf

    default_dir, bounded_dir = sys.argv[1:]

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def jpeg(height, width, seed=0):
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
        return tf.io.encode_jpeg(pixels, quality=90).numpy()

    def claiming(height, width):
        # A real 8x8 JPEG whose frame header (SOF0) claims another size.
        data = bytearray(jpeg(8, 8))
        sof = data.find(b"\\xff\\xc0")
        data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        return bytes(data)

    def request(clips, special=None, frame=None):
        value = np.array([[frame or good] * 16 for _ in range(clips)], dtype=object)
        for (c, f), data in (special or {}).items():
            value[c, f] = data
        return tf.constant(value)

    def answer(model, signature, **inputs):
        try:
            out = model.signatures[signature](**inputs)
            return {"ok": [n.decode() for n in out["top_k_names"].numpy()[0]]}
        except tf.errors.InvalidArgumentError as e:
            return {"error": e.message}

    default, bounded = tf.saved_model.load(default_dir), tf.saved_model.load(bounded_dir)
    good = jpeg(64, 64)
    bomb = claiming(13000, 13000)
    report = {"bomb_bytes": len(bomb), "answers": {}}
    answers = report["answers"]
    answers["good"] = answer(default, "predict_video_jpeg", jpeg_frames=request(40))
    report["peak_before_mb"] = peak_mb()
    answers["bomb"] = answer(default, "predict_video_jpeg",
                             jpeg_frames=request(40, {(3, 8): bomb}))
    answers["bomb_per_clip"] = answer(default, "predict_jpeg",
                                      jpeg_frames=request(2, {(1, 8): bomb}))
    report["peak_after_mb"] = peak_mb()
    answers["cut_short"] = answer(default, "predict_video_jpeg",
                                  jpeg_frames=request(3, {(2, 8): good[:-40]}))
    answers["thin"] = answer(default, "predict_jpeg",
                             jpeg_frames=request(2, {(0, 5): claiming(1, 60000)}))
    answers["too_many_clips"] = answer(default, "predict_video_jpeg",
                                       jpeg_frames=request(257))
    answers["raw_thin"] = answer(default, "serving_default",
                                 clips=tf.zeros([1, 16, 20, 300, 3], tf.uint8))
    answers["bounded_good"] = answer(bounded, "predict_video_jpeg", jpeg_frames=request(3))
    answers["bounded_jpeg"] = answer(bounded, "predict_video_jpeg",
                                     jpeg_frames=request(1, {(0, 2): jpeg(250, 250)}))
    answers["bounded_clips"] = answer(bounded, "predict_video_jpeg", jpeg_frames=request(4))
    answers["bounded_raw"] = answer(bounded, "predict_video",
                                    clips=tf.zeros([1, 16, 210, 210, 3], tf.uint8))
    answers["bounded_raw_clips"] = answer(bounded, "serving_default",
                                          clips=tf.zeros([4, 16, 64, 64, 3], tf.uint8))
    print(json.dumps(report))
""")

# Holds a folder's writer lock as a running export or conversion does, until killed.
HOLD_SCRIPT = textwrap.dedent("""
    import sys, time
    from tfrecord_tools import fileio
    with fileio.exclusive_lock(sys.argv[1], "a folder"):
        print("held", flush=True)
        time.sleep(600)
""")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the commands must quiet TensorFlow themselves
    return env


def _run(argv: list[str], timeout: float = 300) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=REPO)
    return {"status": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
            "text": proc.stdout + proc.stderr}


class Holder:
    """A process holding a lock file, SIGKILLed and left unreaped on `kill()`."""

    def __init__(self, path: str):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, path],
                                     stdout=subprocess.PIPE, text=True, env=_env())
        assert self.proc.stdout.readline().strip() == "held"
        self.pid = self.proc.pid

    def kill(self) -> str:
        """SIGKILL, no wait(): the process stays a zombie. Returns its state letter."""
        os.kill(self.pid, signal.SIGKILL)
        state = "?"
        for _ in range(200):
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.05)
        return state

    def reap(self) -> None:
        self.proc.wait(timeout=30)


def _fill(folder: str, free: int = FREE_BYTES) -> str:
    """Fills the file system of `folder` with one file until `free` bytes are left."""
    stats = os.statvfs(folder)
    size = stats.f_bavail * stats.f_frsize - free
    path = os.path.join(folder, "filler.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(max(size, 0)))
    return path


def _mount_tmpfs(folder: str) -> str | None:
    """Mounts a TMPFS_BYTES tmpfs at `folder`; the reason when the machine does not allow it."""
    os.makedirs(folder, exist_ok=True)
    if shutil.which("mount") is None:
        return "no mount command"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", folder],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or "mount failed")


def _parses(path: str) -> bool:
    try:
        with open(path) as f:
            json.load(f)
        return True
    except ValueError:
        return False


def _temporaries(root: str) -> list[str]:
    """Temporary files and folders left under `root` (names starting `.tmp-`, `*_temp`)."""
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.startswith(".tmp-") or n.endswith("_temp") or n.startswith("checkpoint.tmp")]


# ---------------------------------------------------------------------------
# The shared pieces: a tiny model, two SavedModels, videos, records, a run
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    from export.saved_model import export_model
    from sports1m_tf import synthetic
    from sports1m_tf.models import build_model
    from sports1m_tf.training import train
    from tfrecord_tools.convert import convert

    root = str(tmp_path_factory.mktemp("faults"))
    model = build_model("single_frame", len(CLASSES), width=0.0625, input_size=SIZE)
    keras_dir = os.path.join(root, "keras_run")
    os.makedirs(keras_dir)
    model.save(os.path.join(keras_dir, "model.keras"))
    with open(os.path.join(keras_dir, "run_config.json"), "w") as f:
        json.dump({"model": "single_frame", "class_names": CLASSES}, f)
    serving = os.path.join(root, "serving")
    default = export_model(model, serving, "tiny", class_names=CLASSES, warmup=False)
    bounded = export_model(model, serving, "bounded", class_names=CLASSES, warmup=False,
                           **BOUNDED)

    videos = os.path.join(root, "videos")
    paths = {"good": tv.write_video(f"{videos}/good.avi", num_frames=20, width=64, height=64),
             "big": tv.write_video(f"{videos}/big.avi", num_frames=20, width=256, height=192),
             "small": tv.write_video(f"{videos}/small.avi", num_frames=20, width=24,
                                     height=24)}

    data = synthetic.make_dataset(os.path.join(root, "synth"), classes="appearance",
                                  splits={"train": 2, "val": 1}, num_frames=32, size=48, seed=0)
    records = os.path.join(root, "records")
    convert(data["manifests"]["train"], output_dir=records, split="train", num_shards=1,
            clips_per_video=1, frame_size=40, progress=False)
    run = os.path.join(root, "run")
    train.train(train.make_config(
        model="single_frame", width=0.0625, input_size=SIZE, batch_size=2, dropout=0.0,
        strategy="one_device", train_files=[os.path.join(records, "train-*")], model_dir=run,
        train_steps=2, log_every=1, eval_every=2, checkpoint_every=2))
    return {"root": root, "keras": os.path.join(keras_dir, "model.keras"), "serving": serving,
            "default": default, "bounded": bounded, "videos": paths, "synth": data,
            "records": records, "run": run}


@pytest.fixture(scope="module")
def served(outcomes) -> dict:
    """The hostile requests, answered in a fresh process (run with the commands)."""
    out = outcomes["results"]["serve"]
    assert out["status"] == 0, out["stderr"][-3000:]
    return json.loads(out["stdout"].strip().splitlines()[-1])


def test_a_decompression_bomb_is_refused_before_it_is_decoded(served):
    answers = served["answers"]
    assert answers["good"]["ok"]
    assert served["bomb_bytes"] < 1000
    for key, signature in (("bomb", "predict_video_jpeg"), ("bomb_per_clip", "predict_jpeg")):
        message = answers[key]["error"]
        assert f"{signature}: a frame over the bound of 2560000 pixels" in message, message
        assert "read from its JPEG header" in message and "--max_frame_pixels" in message
    assert "[[3 8]] [[13000 13000]]" in answers["bomb"]["error"]
    assert "[[1 8]] [[13000 13000]]" in answers["bomb_per_clip"]["error"]
    # Decoding the frame would allocate 507 MB.
    assert served["peak_after_mb"] - served["peak_before_mb"] < 100, served


def test_cut_short_thin_and_too_many_are_refused_naming_clip_and_frame(served):
    answers = served["answers"]
    assert ("predict_video_jpeg: JPEG data without its end marker (a JPEG file ends with the "
            "bytes FF D9): cut short; [clip, frame] of the first such frame:] [[2 8]]"
            in answers["cut_short"]["error"]), answers["cut_short"]
    assert ("predict_jpeg: a frame whose shorter side is below the model input size of 32 "
            "pixels" in answers["thin"]["error"])
    assert "[[0 5]] [[1 60000]]" in answers["thin"]["error"]
    assert ("predict_video_jpeg: more than 256 clips in one request"
            in answers["too_many_clips"]["error"])
    assert ("serving_default: frames whose shorter side is below the model input size of 32 "
            "pixels; got shape] [1 16 20 300 3]" in answers["raw_thin"]["error"])


def test_bounds_set_at_export_are_enforced_and_recorded(served, world):
    answers = served["answers"]
    assert answers["bounded_good"]["ok"]
    assert "over the bound of 40000 pixels" in answers["bounded_jpeg"]["error"]
    assert "[[0 2]] [[250 250]]" in answers["bounded_jpeg"]["error"]
    assert "more than 3 clips in one request" in answers["bounded_clips"]["error"]
    assert "more than 3 clips in one request" in answers["bounded_raw_clips"]["error"]
    assert ("predict_video: frames over the bound of 40000 pixels (height x width; set at "
            "export: sports1m-export --max_frame_pixels); got shape] [1 16 210 210 3]"
            in answers["bounded_raw"]["error"])
    info = json.load(open(os.path.join(world["bounded"], "assets.extra", "model_info.json")))
    assert (info["max_frame_pixels"], info["max_clips"], info["min_frame_side"]) == (
        40_000, 3, SIZE)


# ---------------------------------------------------------------------------
# Command cases, run side by side
# ---------------------------------------------------------------------------
def _predict_cases(world: dict) -> dict:
    root, v = world["root"], world["videos"]
    folder = os.path.join(root, "a_folder")
    os.makedirs(folder, exist_ok=True)
    loop = os.path.join(root, "loop.mp4")
    if not os.path.lexists(loop):
        os.symlink(loop, loop)
    listing = os.path.join(root, "lists", "list.txt")
    os.makedirs(os.path.dirname(listing), exist_ok=True)
    with open(listing, "w") as f:
        f.write(f"../videos/good.avi\n{v['good']}\n")

    def predict(model, *args):
        return lambda: _run(command("sports1m-predict", f"--saved_model={model}", *args))

    return {
        "predict: inf seconds": predict(world["default"], "--segment_seconds=inf", v["good"]),
        "predict: nan seconds": predict(world["default"], "--segment_seconds=nan", v["good"]),
        "predict: a folder and a link loop": predict(world["default"], "--workers=1", folder,
                                                     loop),
        # --max_clips left at its default (20): lowered to the model's 3.
        "predict: frames outside the bounds": predict(world["bounded"], "--workers=1",
                                                      f"--manifest={listing}", v["big"],
                                                      v["small"], v["good"]),
        "predict: more clips than the model takes": predict(world["bounded"], "--max_clips=4",
                                                            v["good"]),
    }


def _lock_cases(world: dict) -> dict:
    """Each case: a holder holds the lock while the command runs (refused), then is
    SIGKILLed and left a zombie, its lock file naming a live pid, and the command
    runs again (goes ahead)."""
    root = world["root"]
    export_dir = os.path.join(root, "locked_serving")
    convert_out = os.path.join(root, "locked_records")
    manifest, video_root = _confined_manifest(world)

    def export():
        return _run(command("sports1m-export", f"--keras_model={world['keras']}",
                            f"--export_dir={export_dir}", "--name=tiny", "--nowarmup",
                            "--max_frame_pixels=40000", "--max_clips=3"))

    def convert():
        return _run(command("sports1m-convert", f"--manifest={manifest}", "--split=val",
                            f"--video_root={video_root}", f"--output_dir={convert_out}",
                            "--noprogress", "--clips_per_video=1", "--frame_size=40",
                            "--num_shards=1"))

    def locked(run, lock):
        def case():
            # A staging folder left by a killed export: the next export removes it.
            os.makedirs(os.path.join(export_dir, "tiny", ".tmp-1-99999-deadbeef"), exist_ok=True)
            holder = Holder(lock)
            refused = run()
            state = holder.kill()
            with open(lock, "w") as f:  # the record names a live process (a reused pid)
                json.dump({"pid": os.getpid(), "host": os.uname().nodename}, f)
            after = run()
            holder.reap()
            return {"refused": refused, "after": after, "holder": holder.pid, "state": state}
        return case

    return {"lock: export": locked(export, os.path.join(export_dir, "tiny",
                                                        ".sports1m-export.lock")),
            "lock: convert": locked(convert, os.path.join(convert_out, ".val.lock"))}


def _disk_cases(world: dict, reason: dict) -> dict:
    """Full disks: each case's folder is a tmpfs holding earlier output, then filled."""
    root = world["root"]

    def mounted(name):
        folder = os.path.join(root, name)
        why = _mount_tmpfs(folder)
        if why:
            reason[name] = why
        return None if why else folder

    cases = {}
    convert_disk = mounted("full_convert")
    if convert_disk:
        from tfrecord_tools.convert import convert
        convert(world["synth"]["manifests"]["train"], output_dir=convert_disk, split="train",
                num_shards=1, clips_per_video=1, frame_size=40, progress=False)
        _fill(convert_disk)
        cases["full disk: convert"] = (convert_disk, lambda: _run(command(
            "sports1m-convert", f"--manifest={world['synth']['manifests']['val']}",
            "--split=val", f"--output_dir={convert_disk}", "--noprogress",
            "--clips_per_video=2", "--frame_size=200")))
    export_disk = mounted("full_export")
    if export_disk:
        shutil.copytree(os.path.join(world["serving"], "bounded"),
                        os.path.join(export_disk, "tiny"))
        _fill(export_disk)
        cases["full disk: export"] = (export_disk, lambda: _run(command(
            "sports1m-export", f"--keras_model={world['keras']}", f"--export_dir={export_disk}",
            "--name=tiny", "--nowarmup")))
    train_disk = mounted("full_train")
    if train_disk:
        run = os.path.join(train_disk, "run")
        shutil.copytree(world["run"], run)
        _fill(train_disk)
        cases["full disk: train"] = (train_disk, lambda: _run(command(
            "sports1m-train", f"--train_files={world['records']}/train-*", f"--model_dir={run}",
            *SMALL, "--train_steps=4", "--checkpoint_every=2", "--eval_every=2",
            "--log_every=1")))
    return cases


def _confined_manifest(world: dict) -> tuple[str, str]:
    """(a manifest with lines that climb out of its video root, that root)."""
    root = os.path.join(world["root"], "confined")
    videos = os.path.join(root, "videos")
    good = world["videos"]["good"]
    os.makedirs(os.path.join(videos, "sub"))
    outside = shutil.copy(good, os.path.join(root, "outside.avi"))  # there, and not read
    shutil.copy(good, os.path.join(videos, "inside.avi"))
    absolute = shutil.copy(good, os.path.join(world["root"], "elsewhere.avi"))
    manifest = os.path.join(root, "videos.csv")
    with open(manifest, "w") as f:
        f.write(f"../outside.avi,a\nsub/../../outside.avi,a\ninside.avi,a\n{absolute},b\n")
    assert os.path.exists(outside)
    return manifest, videos


@pytest.fixture(scope="module")
def outcomes(world) -> dict:
    skipped: dict[str, str] = {}
    disks: dict = {}
    try:
        return _run_cases(world, skipped, disks)
    finally:
        for folder, _ in disks.values():
            subprocess.run(["umount", "-l", folder], capture_output=True)


def _run_cases(world: dict, skipped: dict, disks: dict) -> dict:
    disks.update(_disk_cases(world, skipped))
    # The longest first (sequences of two commands, TensorFlow imports), so the pool
    # is never idle at the end.
    before = {name: checksums(folder) for name, (folder, _) in disks.items()}
    jobs = {"serve": lambda: _run([sys.executable, "-c", SERVE_SCRIPT, world["default"],
                                   world["bounded"]]),
            **_lock_cases(world), **{name: run for name, (_, run) in disks.items()},
            "flag: --shuffle_buffer=-5": lambda: _run(command(
                "sports1m-train", f"--train_files={world['records']}/train-*",
                f"--model_dir={world['root']}/t_shuffle", "--shuffle_buffer=-5",
                "--train_steps=1", *SMALL)),
            **_predict_cases(world),
            "flag: --max_clips=0 at export": lambda: _run(command(
                "sports1m-export", f"--keras_model={world['keras']}",
                f"--export_dir={world['root']}/x0", "--max_clips=0"))}
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: f.result() for name, f in futures.items()}
    for name, (folder, _) in disks.items():
        results[name]["before"] = before[name]
        results[name]["after"] = checksums(folder)
        results[name]["temporaries"] = _temporaries(folder)
        results[name]["json_whole"] = all(_parses(p) for p in results[name]["after"]
                                          if p.endswith(".json"))
        results[name]["folder"] = folder
    return {"results": results, "skipped": skipped}


def _one_line_error(out: dict, status: int = 1) -> str:
    """The error line of a command that failed as a user's mistake should."""
    assert out["status"] == status, out["text"][-3000:]
    assert "Traceback" not in out["text"], out["text"][-3000:]
    errors = [ln for ln in out["stderr"].splitlines() if ": error: " in ln]
    assert len(errors) == 1, out["stderr"][-3000:]
    return errors[0]


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_predict_refuses_seconds_that_are_not_finite(outcomes, value):
    line = _one_line_error(outcomes["results"][f"predict: {value} seconds"])
    assert "--segment_seconds must be a finite number of seconds" in line and value in line


def test_predict_names_a_folder_and_a_link_loop(outcomes, world):
    out = outcomes["results"]["predict: a folder and a link loop"]
    assert out["status"] == 1 and "Traceback" not in out["text"], out["text"][-3000:]
    folder, loop = os.path.join(world["root"], "a_folder"), os.path.join(world["root"], "loop.mp4")
    assert f"{folder}: ERROR: a folder, not a video file\n" in out["stderr"], out["stderr"]
    assert (f"{loop}: ERROR: a symbolic link loop (the link leads back to itself), not a video "
            "file\n") in out["stderr"], out["stderr"]


def test_predict_applies_the_models_bounds_to_video_frames(outcomes, world):
    out = outcomes["results"]["predict: frames outside the bounds"]
    assert out["status"] == 0 and "Traceback" not in out["text"], out["text"][-3000:]
    v = world["videos"]
    assert (f"{v['big']}: ERROR: frames of 256x192 (49,152 pixels) are over the model's bound "
            "of 40,000 pixels (raise it with --max_frame_pixels)") in out["stderr"], out["stderr"]
    assert (f"{v['small']}: ERROR: frames of 24x24: the shorter side is below the model's "
            f"input of {SIZE} pixels") in out["stderr"], out["stderr"]
    assert f"{v['good']} (1 clips)" in out["stdout"], out["stdout"]
    line = _one_line_error(outcomes["results"]["predict: more clips than the model takes"])
    assert "--max_clips 4 is over the model's bound of 3 clips a request" in line


def test_locks_refuse_a_second_writer_and_never_a_dead_one(outcomes):
    for name, folder in (("lock: export", "model folder "), ("lock: convert", "split 'val' of ")):
        out = outcomes["results"][name]
        line = _one_line_error(out["refused"])
        assert folder in line and f"is in use by pid {out['holder']} on " in line, line
        assert out["state"] == "Z", out  # the holder was a zombie when the command reran
        assert out["after"]["status"] == 0, out["after"]["text"][-3000:]
    export = outcomes["results"]["lock: export"]["after"]
    version = export["stdout"].strip().splitlines()[-1]
    assert version.endswith(os.path.join("tiny", "1")), export["stdout"]
    assert not [n for n in os.listdir(os.path.dirname(version)) if n.startswith(".tmp-")]
    info = json.load(open(os.path.join(version, "assets.extra", "model_info.json")))
    assert (info["max_frame_pixels"], info["max_clips"]) == (40_000, 3)


@pytest.mark.parametrize("what", ["convert", "export", "train"])
def test_a_full_disk_is_one_line_and_loses_nothing(outcomes, what):
    name = f"full disk: {what}"
    if name not in outcomes["results"]:
        why = outcomes["skipped"].get(f"full_{what}", "no tmpfs")
        pytest.skip(f"no small tmpfs could be mounted here ({why})")
    out = outcomes["results"][name]
    line = _one_line_error(out)
    assert "no space left on device (the disk is full" in line, line
    assert f" {out['folder']}" in line, line
    assert out["temporaries"] == [], out["temporaries"]
    # A resumed run first records its new settings (--train_steps), atomically.
    before = {p: h for p, h in out["before"].items() if not p.endswith("run_config.json")}
    assert {p: out["after"].get(p) for p in before} == before
    assert out["json_whole"], out["after"]


def test_flag_problems_are_one_line(outcomes):
    line = _one_line_error(outcomes["results"]["flag: --shuffle_buffer=-5"])
    assert "shuffle_buffer" in line and "-5" in line, line
    line = _one_line_error(outcomes["results"]["flag: --max_clips=0 at export"])
    assert "--max_clips must be at least 1, got 0" in line, line


def test_manifest_paths_stay_inside_the_video_root(outcomes, world):
    out = outcomes["results"]["lock: convert"]["after"]  # its manifest climbs out
    assert out["status"] == 0 and "Traceback" not in out["text"], out["text"][-3000:]
    assert "2 clips from 2 videos" in out["stdout"], out["text"]
    manifest = os.path.join(world["root"], "confined", "videos.csv")
    for line, path in ((1, "../outside.avi"), (2, "sub/../../outside.avi")):
        assert (f"failed: {manifest}:{line}: {path}: path '{path}' climbs out of "
                in out["stderr"]), out["stderr"]
    assert "give an absolute path to read a file elsewhere" in out["stderr"]
    listed = outcomes["results"]["predict: frames outside the bounds"]  # its --manifest
    listing = os.path.join(world["root"], "lists", "list.txt")
    assert (f"../videos/good.avi: ERROR: {listing}:1: path '../videos/good.avi' climbs out of"
            in listed["stderr"]), listed["stderr"]
    assert listed["stdout"].count(f"{world['videos']['good']} (1 clips)") == 2, listed["stdout"]
