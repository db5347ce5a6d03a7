"""Bad input never hangs, never lies, never loses data: user mistakes across the commands.

Each case runs a real command in a fresh process on real records converted from
real video files, and asserts its exit status, its message, and that every file
already on disk is unchanged (checksums before and after). The cases share one
converted dataset and one tiny trained run, and run side by side (a process pays
about 10 s to import TensorFlow; most cases fail before needing it).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from typing import Callable

import pytest

from sports1m_tf import synthetic
import testvideos as tv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {  # console script -> the module whose run() it calls
    "sports1m-convert": "tfrecord_tools.convert_main", "sports1m-inspect": "tfrecord_tools.inspect_main",
    "sports1m-train": "sports1m_tf.training.train", "sports1m-eval": "sports1m_tf.evaluation.evaluate",
    "sports1m-export": "export.export_main", "sports1m-finetune": "sports1m_tf.training.finetune",
    "sports1m-synth": "sports1m_tf.synthetic", "sports1m-predict": "export.predict",
    "sports1m-demo": "sports1m_tf.demo"}
SMALL = ["--model=single_frame", "--width=0.125", "--input_size=32", "--batch_size=4",
         "--dropout=0", "--strategy=one_device"]
PARALLEL = 3  # processes at once: most wait on start-up, not on the CPU


def command(name: str, *args: str) -> list[str]:
    """argv that runs console script `name` with this checkout (no install needed)."""
    code = (f"import sys; sys.argv[0] = {name!r}; "
            f"from {COMMANDS[name]} import run; run()")
    return [sys.executable, "-c", code, *args]


def checksums(*roots: str) -> dict[str, str]:
    """sha256 of every file under `roots` (files or folders)."""
    out = {}
    for root in roots:
        paths = [root] if os.path.isfile(root) else [
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
        for p in paths:
            with open(p, "rb") as f:
                out[p] = hashlib.sha256(f.read()).hexdigest()
    return out


@dataclasses.dataclass
class Case:
    """One mistake: the command, what it must answer, and the data it must not touch."""
    name: str
    argv: list[str]
    status: int
    message: str  # must appear in stdout + stderr
    watch: list[str]  # files and folders whose existing files must stay byte-identical
    check: Callable[[dict], None] | None = None  # more assertions on the outcome


# ---------------------------------------------------------------------------
# The shared data: real videos → records; a tiny run trained on them
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    from tfrecord_tools.convert import convert
    root = str(tmp_path_factory.mktemp("bad_input"))
    videos = synthetic.make_dataset(os.path.join(root, "videos"), classes="appearance",
                                    splits={"train": 3, "val": 1}, num_frames=32, size=48,
                                    seed=0)
    records = os.path.join(root, "records")
    for split, shards in (("train", 2), ("val", 1)):
        convert(videos["manifests"][split], output_dir=records, split=split,
                num_shards=shards, clips_per_video=2, frame_size=40, progress=False)
    small = os.path.join(root, "small")  # frames smaller than the run's 32-pixel crop
    convert(videos["manifests"]["val"], output_dir=small, split="val", num_shards=1,
            clips_per_video=1, frame_size=24, progress=False)

    from sports1m_tf.training import train
    run = os.path.join(root, "run")
    train.train(train.make_config(
        model="single_frame", width=0.125, input_size=32, batch_size=4, dropout=0.0,
        strategy="one_device", train_files=[os.path.join(records, "train-*")],
        val_files=[os.path.join(records, "val-*")], model_dir=run, train_steps=2,
        log_every=1, eval_every=2, checkpoint_every=2, val_batches=1))
    return {"root": root, "videos": videos, "records": records, "small": small, "run": run,
            "classes": json.load(open(os.path.join(records, "dataset.json")))["classes"]}


_HELD_LOCKS: list[int] = []  # descriptors of locks this process holds while cases run


def _hold_lock(path: str) -> int:
    """Takes the kernel lock on `path` as a running conversion holds it; returns the fd."""
    import fcntl
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename}).encode())
    return fd


def _lock_is_free(path: str) -> bool:
    """True when no process holds the kernel lock on `path`."""
    import fcntl
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _copy(src: str, dst: str) -> str:
    shutil.copytree(src, dst)
    return dst


def _records_with_classes(world: dict, name: str, classes: list[str]) -> str:
    """A copy of the records whose dataset.json names other classes."""
    folder = _copy(world["records"], os.path.join(world["root"], name))
    path = os.path.join(folder, "dataset.json")
    info = json.load(open(path))
    info["classes"] = classes
    with open(path, "w") as f:
        json.dump(info, f)
    return folder


def _corrupt_shard(src: str, dst: str) -> None:
    """`src` with every record's JPEG data broken (records still parse; frames do not decode)."""
    from sports1m_tf.data.records import _masked_crc32c
    data, out, pos = open(src, "rb").read(), [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        record = data[pos + 12:pos + 12 + n].replace(b"\xff\xd8\xff", b"\x00\x00\x00")
        head = n.to_bytes(8, "little")
        out += [head, _masked_crc32c(head).to_bytes(4, "little"), record,
                _masked_crc32c(record).to_bytes(4, "little")]
        pos += 12 + n + 4
    with open(dst, "wb") as f:
        f.write(b"".join(out))


def _latin1_manifest(world: dict) -> str:
    path = os.path.join(world["root"], "latin1.csv")
    video = world["videos"]["videos"]["val"][0][0]
    with open(path, "wb") as f:
        f.write(f"{video},cafe\n".encode() + f"{video},caf\u00e9\n".encode("latin-1"))
    return path


def _quoted_manifest(world: dict) -> str:
    path = os.path.join(world["root"], "quoted.csv")
    (a, _), (b, _) = world["videos"]["videos"]["val"][:2]
    with open(path, "w") as f:
        f.write(f'path,labels\n{a},"cup, red"\n"{b}",plate\n')
    return path


def _empty_class_manifest(world: dict) -> tuple[str, str]:
    path = os.path.join(world["root"], "ghost.csv")
    labels = os.path.join(world["root"], "ghost_classes.txt")
    video = world["videos"]["videos"]["val"][0][0]
    with open(path, "w") as f:
        f.write(f"{video},seen\n")
    with open(labels, "w") as f:
        f.write("seen\nghost\n")
    return path, labels


def _cases(world: dict) -> list[Case]:
    """Every CLI case, with its files set up."""
    root, records, run = world["root"], world["records"], world["run"]
    train_glob, val_glob = os.path.join(records, "train-*"), os.path.join(records, "val-*")
    val_csv, train_csv = world["videos"]["manifests"]["val"], world["videos"]["manifests"]["train"]
    a_file = os.path.join(root, "a_file.txt")
    with open(a_file, "w") as f:
        f.write("not a folder\n")
    classes = world["classes"]

    # Records folders derived from the shared ones (each case owns its copy).
    renamed = _records_with_classes(world, "renamed", [f"other_{c}" for c in classes])
    reordered = _records_with_classes(world, "reordered", list(reversed(classes)))
    no_json = _copy(records, os.path.join(root, "no_json"))
    os.remove(os.path.join(no_json, "dataset.json"))
    bad = _copy(records, os.path.join(root, "bad"))
    bad_shard = os.path.join(bad, "train-00001-of-00002.tfrecord")
    _corrupt_shard(os.path.join(records, "train-00001-of-00002.tfrecord"), bad_shard)
    overwrite = _copy(records, os.path.join(root, "overwrite"))
    locked = _copy(records, os.path.join(root, "locked"))
    _HELD_LOCKS.append(_hold_lock(os.path.join(locked, ".val.lock")))  # by this live process
    stale = os.path.join(root, "stale")
    os.makedirs(stale)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(os.path.join(stale, ".val.lock"), "w") as f:  # a dead process's record
        json.dump({"pid": dead.pid, "host": os.uname().nodename}, f)
    sheet_records = _copy(records, os.path.join(root, "sheet"))
    run_done = _copy(run, os.path.join(root, "run_done"))
    run_other = _copy(run, os.path.join(root, "run_other"))
    other_names = os.path.join(root, "other_names.txt")
    with open(other_names, "w") as f:
        f.write("".join(f"x{i}\n" for i in range(len(classes))))
    ghost_csv, ghost_labels = _empty_class_manifest(world)

    def convert(*args):
        return command("sports1m-convert", "--noprogress", "--clips_per_video=1",
                       "--frame_size=32", *args)

    def no_leftovers(folder, allowed):
        def check(outcome):
            assert sorted(os.listdir(folder)) == sorted(allowed), os.listdir(folder)
        return check

    def dataset_classes(folder, expected):
        def check(outcome):
            assert json.load(open(os.path.join(folder, "dataset.json")))["classes"] == expected
        return check

    def replaced_train(outcome):
        info = json.load(open(os.path.join(overwrite, "dataset.json")))
        assert info["splits"]["train"]["settings"]["manifest"] == val_csv
        assert info["splits"]["val"] == json.load(open(os.path.join(records, "dataset.json")))[
            "splits"]["val"]

    def summary_once(outcome):
        assert outcome["stdout"].count("clips from") == 1, outcome["stdout"]
        assert "ghost" in outcome["stderr"]

    def sheet_beside_records(outcome):
        assert os.path.exists(os.path.join(sheet_records, "contact_sheet.png"))
        assert not os.path.exists(os.path.join(outcome["cwd"], "contact_sheet.png"))

    def lock_gone(outcome):
        assert _lock_is_free(os.path.join(stale, ".val.lock"))
        assert os.path.exists(os.path.join(stale, "val-00000-of-00001.tfrecord"))

    return [
        # --- sports1m-convert --------------------------------------------------------
        Case("convert: no --split for a CSV manifest", convert(
            f"--manifest={val_csv}", f"--output_dir={records}"), 1, "--split is required",
            [records]),
        Case("convert: another manifest into an existing split", convert(
            f"--manifest={val_csv}", "--split=train", f"--output_dir={records}"), 1,
            "already holds split 'train'", [records]),
        Case("convert: other settings into an existing split", convert(
            f"--manifest={train_csv}", "--split=train", "--num_shards=3",
            f"--output_dir={records}"), 1, "--overwrite", [records]),
        Case("convert: --overwrite replaces only the named split", convert(
            f"--manifest={val_csv}", "--split=train", "--num_shards=1", "--overwrite",
            f"--output_dir={overwrite}"), 0, "clips from",
            [os.path.join(overwrite, "val-00000-of-00001.tfrecord")], replaced_train),
        Case("convert: --output_dir is a file", convert(
            f"--manifest={val_csv}", "--split=val", f"--output_dir={a_file}"), 1,
            "is a file, not a folder", [a_file]),
        Case("convert: --output_dir below a file", convert(
            f"--manifest={val_csv}", "--split=val", f"--output_dir={a_file}/sub"), 1,
            "is a file, not a folder", [a_file]),
        Case("convert: manifest not in UTF-8", convert(
            f"--manifest={_latin1_manifest(world)}", "--split=val",
            f"--output_dir={root}/latin_out"), 1, "latin1.csv:2: not UTF-8", []),
        Case("convert: quoted CSV label keeps its comma", convert(
            f"--manifest={_quoted_manifest(world)}", "--split=val",
            f"--output_dir={root}/quoted_out"), 0, "2 clips from 2 videos", [],
            dataset_classes(f"{root}/quoted_out", ["cup, red", "plate"])),
        Case("convert: a second conversion of a split while one runs", convert(
            f"--manifest={val_csv}", "--split=val", "--overwrite", f"--output_dir={locked}"),
            1, f"split 'val' of {locked} is in use by pid {os.getpid()}", [locked],
            no_leftovers(locked, os.listdir(locked))),
        Case("convert: a lock left by a dead process is taken over", convert(
            f"--manifest={val_csv}", "--split=val", "--num_shards=1",
            f"--output_dir={stale}"), 0, "clips from", [], lock_gone),
        Case("convert: missing manifest", convert(
            f"--manifest={root}/nope.csv", "--split=val", f"--output_dir={root}/nope_out"), 1,
            "nope.csv does not exist", []),
        Case("convert: bad flag value", convert(
            f"--manifest={val_csv}", "--split=val", "--num_shards=0",
            f"--output_dir={records}"), 1, "num_shards must be at least 1", [records]),
        Case("convert: one summary, with the classes left empty", convert(
            f"--manifest={ghost_csv}", f"--labels={ghost_labels}", "--split=val",
            f"--output_dir={root}/ghost_out"), 0, "1 classes have 0 clips", [],
            summary_once),
        Case("convert: --help lists its own flags", command("sports1m-convert", "--help"), 0,
             "--[no]overwrite", []),
        # --- sports1m-inspect --------------------------------------------------------
        Case("inspect: contact sheet beside the records", command(
            "sports1m-inspect", sheet_records), 0, "contact sheet", [sheet_records],
            sheet_beside_records),
        Case("inspect: nothing matches", command("sports1m-inspect", f"{root}/none-*"), 1,
             "no shard matches", []),
        # --- sports1m-train ----------------------------------------------------------
        Case("train: frames smaller than the crop fail at once (no hang)", command(
            "sports1m-train", f"--train_files={train_glob}", f"--model_dir={root}/t_crop",
            "--width=0.125", "--train_steps=5"), 1,
            "frames are 40x40", [records]),
        Case("train: crop check from the first record without dataset.json", command(
            "sports1m-train", f"--train_files={no_json}/train-*", f"--model_dir={root}/t_nj",
            "--width=0.125", "--num_classes=4", "--train_steps=5"), 1,
            "the first record of", [no_json]),
        Case("train: --train_files match nothing", command(
            "sports1m-train", f"--train_files={root}/none-*", f"--model_dir={root}/t_none",
            *SMALL), 1, "no clip record files match", []),
        Case("train: resume with --train_steps below the checkpoint", command(
            "sports1m-train", f"--train_files={train_glob}", f"--model_dir={run_done}",
            "--train_steps=1", *SMALL), 0, "already at step 2", [run_done],
            no_leftovers(run_done, os.listdir(run_done))),
        Case("train: undecodable records stop the run, naming the file", command(
            "sports1m-train", f"--train_files={bad}/train-*", f"--model_dir={root}/t_bad",
            "--train_steps=200", "--log_every=5", *SMALL), 1,
            "train-00001-of-00002.tfrecord (", [bad]),
        Case("train: --model_dir is a file", command(
            "sports1m-train", f"--train_files={train_glob}", f"--model_dir={a_file}",
            "--train_steps=1", *SMALL), 1, a_file, [a_file, records]),
        Case("train: bad flag value", command(
            "sports1m-train", f"--train_files={train_glob}", f"--model_dir={root}/t_bs",
            "--train_steps=1", *SMALL, "--batch_size=0"), 1, "batch_size must be positive",
            [records]),
        Case("train: resume on records of other classes", command(
            "sports1m-train", f"--train_files={renamed}/train-*", f"--model_dir={run_other}",
            "--train_steps=4", *SMALL), 1, "only the data has", [run_other, renamed]),
        Case("train: --help lists its own flags", command("sports1m-train", "--help"), 0,
             "--max_skipped_fraction", []),
        # --- sports1m-eval -----------------------------------------------------------
        Case("eval: missing run folder", command(
            "sports1m-eval", f"--model_dir={root}/no_run", f"--eval_files={val_glob}",
            f"--output_dir={root}/e_missing"), 1, "no checkpoint and no model.keras",
            [records]),
        Case("eval: records of other classes (same count)", command(
            "sports1m-eval", f"--model_dir={run}", f"--eval_files={renamed}/val-*",
            f"--output_dir={root}/e_renamed"), 1, "only the data has", [run, renamed]),
        Case("eval: the same classes in another order", command(
            "sports1m-eval", f"--model_dir={run}", f"--eval_files={reordered}/val-*",
            f"--output_dir={root}/e_reordered"), 1, "in another order", [run, reordered]),
        Case("eval: frames smaller than the model's crop", command(
            "sports1m-eval", f"--model_dir={run}", f"--eval_files={world['small']}/val-*",
            f"--output_dir={root}/e_small"), 1, "frames are 24x24", [run, world["small"]]),
        Case("eval: --eval_files match nothing", command(
            "sports1m-eval", f"--model_dir={run}", f"--eval_files={root}/none-*",
            f"--output_dir={root}/e_none"), 1, "none-*", [run]),
        # --- sports1m-export, sports1m-finetune ----------------------------------------
        Case("export: missing run folder", command(
            "sports1m-export", f"--model_dir={root}/no_run", f"--export_dir={root}/x1"), 1,
            "no checkpoint and no model.keras", []),
        Case("export: --export_dir is a file", command(
            "sports1m-export", f"--model_dir={run}", f"--export_dir={a_file}"), 1, a_file,
            [run, a_file]),
        Case("export: --class_names other than the model's", command(
            "sports1m-export", f"--model_dir={run}", f"--export_dir={root}/x3",
            f"--class_names={other_names}"), 1, "only the data has", [run]),
        Case("finetune: --init_from missing", command(
            "sports1m-finetune", f"--init_from={root}/no_run", f"--model_dir={root}/f1",
            f"--train_files={train_glob}"), 1,
            "neither a training run folder nor a .keras file", [records]),
    ]


def _run_case(case: Case, cwd: str) -> dict:
    before = checksums(*[w for w in case.watch if os.path.exists(w)])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the commands must quiet TensorFlow themselves
    started = time.monotonic()
    proc = subprocess.run(case.argv, capture_output=True, text=True, timeout=240, cwd=cwd,
                          env=env)
    after = checksums(*[w for w in case.watch if os.path.exists(w)])
    return {"status": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
            "before": before, "after": after, "cwd": cwd,
            "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory) -> dict:
    cases = _cases(world)
    assert [c.name for c in cases] == CASE_NAMES  # the list the report gives
    cwd = str(tmp_path_factory.mktemp("cwd"))
    # Cheap cases (no TensorFlow) first, so the pool is never idle at the end.
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {c.name: (c, pool.submit(_run_case, c, cwd)) for c in cases}
        return {name: (c, f.result()) for name, (c, f) in futures.items()}


CASE_NAMES = [
    "convert: no --split for a CSV manifest",
    "convert: another manifest into an existing split",
    "convert: other settings into an existing split",
    "convert: --overwrite replaces only the named split",
    "convert: --output_dir is a file",
    "convert: --output_dir below a file",
    "convert: manifest not in UTF-8",
    "convert: quoted CSV label keeps its comma",
    "convert: a second conversion of a split while one runs",
    "convert: a lock left by a dead process is taken over",
    "convert: missing manifest",
    "convert: bad flag value",
    "convert: one summary, with the classes left empty",
    "convert: --help lists its own flags",
    "inspect: contact sheet beside the records",
    "inspect: nothing matches",
    "train: frames smaller than the crop fail at once (no hang)",
    "train: crop check from the first record without dataset.json",
    "train: --train_files match nothing",
    "train: resume with --train_steps below the checkpoint",
    "train: undecodable records stop the run, naming the file",
    "train: --model_dir is a file",
    "train: bad flag value",
    "train: resume on records of other classes",
    "train: --help lists its own flags",
    "eval: missing run folder",
    "eval: records of other classes (same count)",
    "eval: the same classes in another order",
    "eval: frames smaller than the model's crop",
    "eval: --eval_files match nothing",
    "export: missing run folder",
    "export: --export_dir is a file",
    "export: --class_names other than the model's",
    "finetune: --init_from missing",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input(outcomes, name):
    case, out = outcomes[name]
    text = out["stdout"] + out["stderr"]
    assert out["status"] == case.status, text[-3000:]
    assert case.message in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    # TensorFlow's start-up noise stays off the console.
    assert "cuInit" not in text and "oneDNN custom operations" not in text, text[-3000:]
    if case.status:
        assert "error:" in out["stderr"], out["stderr"][-2000:]
    # Data already on disk is intact.
    assert {p: out["after"].get(p) for p in out["before"]} == out["before"]
    if case.check:
        case.check(out)


def test_run_files_have_the_same_permissions(world):
    run = world["run"]
    modes = {name: stat.S_IMODE(os.stat(os.path.join(run, name)).st_mode)
             for name in ("run_config.json", "best_model.json", "model.keras")}
    assert modes["run_config.json"] == modes["best_model.json"] == modes["model.keras"], modes


def _ctrl_c_acts() -> None:
    """In the child: Ctrl-C's default action, even when the suite itself was started
    with SIGINT ignored (a background job of a shell), which children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_conversion_with_nothing_half_written(world, tmp_path):
    out = _copy(world["records"], str(tmp_path / "records"))
    before = checksums(out)
    folder = str(tmp_path / "many")
    lines = []
    for i in range(12):
        # The records' classes, so that the new split fits the folder.
        video = tv.write_video(f"{folder}/v{i}.avi", num_frames=64, seed=i)
        lines.append(f"{video},{world['classes'][i % len(world['classes'])]}")
    manifest = str(tmp_path / "many.csv")
    with open(manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    proc = subprocess.Popen(command("sports1m-convert", f"--manifest={manifest}", "--split=more",
                                    f"--output_dir={out}", "--noprogress", "--workers=1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO), preexec_fn=_ctrl_c_acts)
    work = os.path.join(out, ".work", "more", "videos")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(work) and os.listdir(work):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the conversion ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    after = checksums(out)
    assert {p: after.get(p) for p in before} == before
    # No shard, no temporary file; the split's lock file stays, held by no one.
    assert _lock_is_free(os.path.join(out, ".more.lock"))
    left = sorted(n for n in os.listdir(out) if not n.startswith(".work") and n != ".more.lock")
    assert left == sorted(os.path.basename(p) for p in before), left
