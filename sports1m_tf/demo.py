"""sports1m-demo: synthetic videos to trained, evaluated and served models, on this machine.

  sports1m-demo --workdir=demo_run            # `make demo`: recipe demo, ~5 min on 2 cores
  sports1m-demo --workdir=demo_full --full    # `make demo-full`: recipe demo_full
  sports1m-demo --workdir=/tmp/demo --quick   # recipe demo_quick: a smoke run

Stages run project commands, printed first (side by side, lines tagged [1], [2]): synth,
convert, train and eval (single_frame, slow_fusion), export and predict (slow_fusion, a
test video per class); then results, wall time and WORKDIR/summary.json. Flags override
the recipe (sports1m_tf/recipes/demo*.flags). A re-run skips stages finished with the same
commands; an interrupted training carries on; other stages start clean, and so does every
stage after one that ran.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import Sequence

from absl import flags

from sports1m_tf import cli

MODELS = ("single_frame", "slow_fusion")
STAGES_DIR = "stages"  # WORKDIR/stages/NAME.json: a stage's commands and whether it finished
FLAGS = flags.FLAGS
# Integer flags, set in the demo recipes (videos are split 60/20/20% train/val/test).
SIZES = ("videos_per_class", "num_frames", "frame_size", "input_size", "batch_size",
         "single_frame_steps", "slow_fusion_steps", "eval_every", "eval_clips")
SCORES = ("clip_hit_at_1", "video_hit_at_1", "motion_video_hit_at_1",
          "appearance_video_hit_at_1")


def resolve_command(name: str) -> list[str]:
    """Console script `name`: the one beside this Python (its virtualenv's), else on PATH."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    return [script if os.access(script, os.X_OK) else name]


def child_env() -> dict:
    """Every stage's environment: unbuffered output (TensorFlow's C++ chatter is
    filtered by each command unless the user set TF_CPP_MIN_LOG_LEVEL)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_commands(commands: Sequence[tuple[str, list[str]]], *, cwd: str,
                 echo_stdout: bool = True) -> list[str]:
    """Prints the commands, runs them side by side, relays their output (tagged if several)
    and returns each one's stdout. A failure raises cli.UserError naming the command."""
    def relay(stream, tag: str, keep: list, echo: bool) -> None:
        for line in stream:
            keep.append(line)
            if echo:
                sys.stdout.write(tag + line)
                sys.stdout.flush()
    running = []
    for name, args in commands:
        shown = shlex.join([name] + list(args))
        tag = f"[{len(running) + 1}] " if len(commands) > 1 else ""
        print(f"{tag}$ {shown}", flush=True)
        process = subprocess.Popen(resolve_command(name) + list(args), cwd=cwd, text=True,
                                   env=child_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        out: list[str] = []
        threads = [threading.Thread(target=relay, args=a) for a in (
            (process.stdout, tag, out, echo_stdout), (process.stderr, tag, [], True))]
        for t in threads:
            t.start()
        running.append((shown, process, threads, out))
    for _, _, threads, _ in running:
        for t in threads:
            t.join()
    failed = [f"exit status {p.wait()}: {shown}" for shown, p, *_ in running if p.wait()]
    if failed:
        raise cli.UserError(f"stage command failed with {'; '.join(failed)} (in {cwd}); fix "
                            "the cause and re-run the same command to carry on")
    return ["".join(out) for *_, out in running]


def stages(s) -> list[tuple[str, list[tuple[str, list[str]]], list[str]]]:
    """(name, commands, outputs deleted on a clean start) of all stages but predict."""
    # A packaged recipe's name, or the user's own flag file.
    recipe = (f"--flagfile={os.path.abspath(s.train_recipe)}" if os.path.isfile(s.train_recipe)
              else f"--recipe={s.train_recipe}")
    train = [("sports1m-train", [
        recipe, f"--model={m}", f"--width={s.width}",
        f"--input_size={s.input_size}", "--train_files=records/train-*",
        "--val_files=records/val-*", f"--model_dir=runs/{m}", f"--batch_size={s.batch_size}",
        f"--train_steps={s[m + '_steps'].value}", f"--seed={s.seed}",
        f"--eval_every={min(s.eval_every, s[m + '_steps'].value)}",
        f"--checkpoint_every={min(s.eval_every, s[m + '_steps'].value)}",
        f"--log_every={max(1, min(100, s.eval_every))}"]
        + ([] if s.dropout is None else [f"--dropout={s.dropout}"])) for m in MODELS]
    return [
        ("synth", [("sports1m-synth", [
            "--output_dir=synth", f"--classes={','.join(s.classes)}",
            f"--videos_per_class={s.videos_per_class}", f"--num_frames={s.num_frames}",
            f"--size={s.frame_size}", f"--seed={s.seed}"])], ["synth"]),
        ("convert", [("sports1m-convert", [
            f"--manifest=synth/{split}.csv", "--labels=synth/classes.txt",
            "--output_dir=records", f"--split={split}", "--num_shards=2",
            f"--frame_size={s.frame_size}", "--workers=1", f"--seed={s.seed}",
            "--noprogress"]) for split in ("train", "val", "test")], ["records"]),
        ("train", train, []),  # [] : an interrupted training carries on from its checkpoint
        ("eval", [("sports1m-eval", [
            f"--model_dir=runs/{m}", "--eval_files=records/test-*", f"--output_dir=reports/{m}",
            f"--clips_per_video={s.eval_clips}", "--noprogress"]) for m in MODELS],
         ["reports"] + [f"runs/{m}/eval" for m in MODELS]),
        ("export", [("sports1m-export", [
            "--model_dir=runs/slow_fusion", "--export_dir=serving", "--name=slow_fusion",
            "--version=1", f"--frame_size={s.frame_size}"]
            # Warm-up requests need tensorflow-serving-api.
            + ([] if importlib.util.find_spec("tensorflow_serving") else ["--nowarmup"]))],
         ["serving"]),
    ]


def held_out_videos(workdir: str) -> list[tuple[str, str]]:
    """The first test video of each class: [(path relative to the workdir, class)]."""
    firsts: dict[str, str] = {}
    with open(os.path.join(workdir, "synth", "test.csv"), newline="") as f:
        for path, label in csv.reader(f):
            firsts.setdefault(label, os.path.join("synth", path))
    return [(path, label) for label, path in firsts.items()]


def run_stage(workdir: str, name: str, commands, outputs: Sequence[str], upstream_ran: bool,
              resumable: bool = False) -> bool:
    """Runs a stage unless it finished before with the same commands; True if it ran."""
    record = os.path.join(workdir, STAGES_DIR, name + ".json")
    wanted = [[script] + list(args) for script, args in commands]
    before = _load(record) if os.path.exists(record) else {}
    same = before.get("commands") == wanted and not upstream_ran
    if same and before.get("finished"):
        print(f"\n==> {name}: finished in an earlier run, skipped", flush=True)
        return False
    print(f"\n==> {name}" + (" (carrying on)" if same and resumable else ""), flush=True)
    if not (same and resumable):
        for output in outputs:
            shutil.rmtree(os.path.join(workdir, output), ignore_errors=True)
    os.makedirs(os.path.dirname(record), exist_ok=True)
    pathlib.Path(record).write_text(json.dumps({"commands": wanted, "finished": False}))
    stdouts = run_commands(commands, cwd=workdir, echo_stdout=name != "predict")
    if name == "predict":
        pathlib.Path(workdir, "predictions.json").write_text(stdouts[0])
    pathlib.Path(record).write_text(json.dumps({"commands": wanted, "finished": True}))
    return True


def _load(*parts: str):
    with open(os.path.join(*parts), newline="") as f:
        return json.load(f) if parts[-1].endswith(".json") else list(csv.DictReader(f))


def model_scores(workdir: str, model: str) -> dict:
    """Test clip and video Hit@1, and video Hit@1 of the motion and appearance classes."""
    info = _load(workdir, "synth", "synthetic.json")
    report = _load(workdir, "reports", model, "metrics.json")
    scores = {k: report[k] for k in ("clip_hit_at_1", "video_hit_at_1")}
    rows = _load(workdir, "reports", model, "predictions.csv")
    for group in ("motion", "appearance"):
        names = set(info[f"{group}_classes"])
        hits = [int(r["hit_at_1"]) for r in rows if set(r["labels"].split(";")) & names]
        scores[f"{group}_video_hit_at_1"] = sum(hits) / len(hits) if hits else None
    return scores


def summarise(workdir: str, seconds: float) -> str:
    """Writes WORKDIR/summary.json; returns the table and where things are."""
    models = {m: model_scores(workdir, m) for m in MODELS}
    truth = dict(held_out_videos(workdir))
    text = pathlib.Path(workdir, "predictions.json").read_text()  # a list, or JSON Lines
    predictions = [{"file": p["video"], "true_class": truth.get(p["video"]),
                    "top5": [t["name"] for t in p.get("top_k", [])]}
                   for p in (json.loads(text) if text.lstrip().startswith("[") else
                             map(json.loads, text.splitlines()))]
    pathlib.Path(workdir, "summary.json").write_text(json.dumps(
        {"seconds": round(seconds, 1), "models": models, "predictions": predictions}, indent=1))
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}"
    lines = ["| model | clip Hit@1 | video Hit@1 | video Hit@1, motion classes | "
             "video Hit@1, appearance classes |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {m} | " + " | ".join(pct(models[m][k]) for k in SCORES) + " |" for m in MODELS]
    lines += [""] + [f"{p['file']}: true {p['true_class']}, top-5 {', '.join(p['top5'])}"
              for p in predictions]
    r = os.path.abspath(workdir)
    lines += ["", f"models: {r}/runs/<model>/model.keras; reports: {r}/reports/<model>/; Saved"
              f"Model: {r}/serving/slow_fusion/1; TensorBoard: tensorboard --logdir={r}/runs"]
    return "\n".join(lines)


def run_demo(workdir: str, s=FLAGS) -> str:
    """Runs (or carries on) every stage of the demo in `workdir`; returns the summary."""
    started = time.time()
    print(f"sports1m-demo in {os.path.abspath(workdir)}", flush=True)
    ran = False
    for name, commands, outputs in stages(s):
        ran |= run_stage(workdir, name, commands, outputs, ran, resumable=name == "train")
    predict = [("sports1m-predict", ["--saved_model=serving/slow_fusion", "--json",
                                     f"--max_clips={s.eval_clips}"]
                + [path for path, _ in held_out_videos(workdir)])]
    run_stage(workdir, "predict", predict, ["predictions.json"], ran)
    text = summarise(workdir, time.time() - started)
    print(f"\n==> results on the held-out test videos\n{text}\n\n"
          f"sports1m-demo finished in {time.time() - started:.0f} s", flush=True)
    return text


def define_flags() -> None:
    """The command's flags (at run time: tests import commands with the same names)."""
    flags.DEFINE_string("workdir", "demo_run", "Folder of the demo run (created).")
    flags.DEFINE_bool("quick", False, "The sizes of recipe demo_quick: a smoke run.")
    flags.DEFINE_bool("full", False, "The sizes of recipe demo_full: every synthetic class.")
    flags.DEFINE_list("classes", None, "Synthetic classes (names, or mixed/motion/appearance).")
    flags.DEFINE_string("train_recipe", None, "sports1m-train's recipe: a packaged one's name "
                        "(motion_cpu, paper) or a flag file.")
    for name in SIZES:
        flags.DEFINE_integer(name, None, name.replace("_", " ").capitalize() + ".",
                             lower_bound=1)
    flags.DEFINE_float("width", None, "Width multiplier of both models.")
    flags.DEFINE_float("dropout", None, "sports1m-train --dropout, if not the recipe's.")
    flags.DEFINE_integer("seed", 0, "Seed of data, initialisation and sampling.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}; sizes are flags")
    w = FLAGS.workdir  # stages delete their outputs: never in a folder of other files
    if os.path.isdir(w) and os.listdir(w) and not os.path.isdir(os.path.join(w, STAGES_DIR)):
        raise cli.UserError(f"--workdir {w} holds files but no {STAGES_DIR}/: it is not a "
                            "demo's folder; choose an empty or new one")
    run_demo(FLAGS.workdir)


def run() -> None:
    define_flags()
    argv = list(sys.argv)
    preset = "demo_quick" if "--quick" in argv else "demo_full" if "--full" in argv else "demo"
    # The preset's sizes first, so that any flag on the command line overrides them.
    argv[1:1] = [f"--recipe={preset}"]
    cli.entry(main)(argv)


if __name__ == "__main__":
    run()
