"""sports1m-demo: from nothing to trained, evaluated and served models on this machine.

  sports1m-demo --workdir=demo_run              # what `make demo` runs (~8 min on 2 cores)
  sports1m-demo --workdir=/tmp/demo --quick     # 1 training step per model: a smoke run
  sports1m-demo --workdir=demo_run --restart    # throw the previous run away first

Each stage is one of the project's own commands, run in a subprocess and printed
before it runs (so the demo doubles as a tutorial of the commands):

  1. sports1m-synth     a synthetic dataset: 7 MOTION classes (a textured disc that
                        only moves differently: one frame says nothing about the
                        class) and 4 APPEARANCE classes (shape and colour), as
                        mp4/avi files with train/val/test manifests
  2. sports1m-convert   each split's videos -> clip TFRecords + dataset.json
  3. sports1m-train     single_frame, then slow_fusion (small width and input)
  4. sports1m-eval      both on the test split (video Hit@1: clips x 4 views averaged)
  5. sports1m-export    the better of the two (test video Hit@1) as a TF Serving
                        SavedModel
  6. sports1m-predict   that SavedModel on two held-out test videos
then a table: clip and video Hit@1 per model (all classes, motion classes,
appearance classes) and where the models, TensorBoard logs and SavedModel are.

Re-running resumes. WORKDIR/demo_state.json records each stage's commands and
whether it finished. A finished stage whose commands are unchanged is skipped;
an interrupted one runs again on top of what it left (training continues from
its last checkpoint, conversion from its last converted video); a stage whose
commands changed (other flags), or one after a stage that ran again, starts
clean: its outputs are deleted first. `--restart` deletes the whole workdir
(only a demo workdir: one holding demo_state.json, or an empty folder).
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, Sequence

from absl import app, flags

from sports1m_tf import cli

STATE_FILE = "demo_state.json"
MODELS = ("single_frame", "slow_fusion")
# Console script -> module with run(); the fallback when the script is not
# installed next to this Python (e.g. running from a source tree).
COMMANDS = {
    "sports1m-synth": "sports1m_tf.synthetic",
    "sports1m-convert": "tfrecord_tools.convert_main",
    "sports1m-train": "sports1m_tf.train",
    "sports1m-eval": "sports1m_tf.evaluate",
    "sports1m-export": "export.export_main",
    "sports1m-predict": "export.predict",
    "sports1m-demo": "sports1m_tf.demo",
}


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo run (defaults: the full demo; `quick()`: the smoke run).

    Attributes:
      videos_per_class: int. Videos per class over train/val/test (60/20/20%).
      num_frames: int. Frames per video (16 per clip).
      video_size: int. Rendered frame size, pixels.
      frame_size: int. Stored (converted) frame size.
      input_size: int. The models' crop of the stored frames.
      width: float. Width multiplier of both models.
      steps: dict model -> training steps.
      batch_size: int. Clips per training step.
      optimizer: str. `sports1m-train --optimizer`: "adam" (default here: the paper's
        SGD does not learn the motion classes within minutes; docs/design.md,
        "Training") or "sgd".
      learning_rate: float. Learning rate.
      shuffle_buffer: int. `sports1m-train --shuffle_buffer`.
      input_scale: float. `sports1m-train --input_scale` (1/64 with Adam).
      kernel_init: str. `sports1m-train --kernel_init` ("he_normal" with Adam: with
        Glorot, Adam kills many fusion-layer units on the motion classes).
      dropout: float. Dropout after fc6 and fc7.
      eval_every: int. Steps between validations (and checkpoints).
      eval_clips: int. Clips per video at evaluation (each in 4 views).
      workers: int. Conversion processes.
      seed: int. Data, initialisation and sampling seed.
    """
    # 180 training videos per class: with fewer, the nets memorise each video's look.
    videos_per_class: int = 300
    num_frames: int = 32
    video_size: int = 64
    frame_size: int = 64
    input_size: int = 56
    width: float = 0.25
    steps: dict = dataclasses.field(
        default_factory=lambda: {"single_frame": 1000, "slow_fusion": 3000})
    batch_size: int = 32
    # The whole training set: a small buffer over 2 shards replays one clip order.
    shuffle_buffer: int = 10_000
    optimizer: str = "adam"
    learning_rate: float = 3e-4
    input_scale: float = 1 / 64
    kernel_init: str = "he_normal"
    dropout: float = 0.5
    eval_every: int = 500
    eval_clips: int = 20
    workers: int = 2
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "DemoSettings":
        """The smoke configuration: every command once, one training step per model."""
        return cls(videos_per_class=3, num_frames=16, video_size=32, frame_size=32,
                   input_size=28, width=0.0625, steps={m: 1 for m in MODELS}, batch_size=4,
                   eval_every=1, eval_clips=1, workers=1, seed=seed)


# ---------------------------------------------------------------------------
# Running commands
# ---------------------------------------------------------------------------
def resolve_command(name: str) -> list[str]:
    """The argv prefix that runs console script `name`.

    The script next to `sys.executable` (the virtualenv's bin/) when it is
    there, else `python -c "from MODULE import run; run()"` with this Python.
    """
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", f"from {COMMANDS[name]} import run; run()"]


def child_env() -> dict:
    """The environment of every stage: unbuffered output, TF's C++ chatter off."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_command(name: str, args: Sequence[str], *, cwd: str) -> str:
    """Prints and runs one command; its stderr (logs, progress bars) goes straight
    to ours, its stdout is echoed and returned.

    Raises:
      RuntimeError: the command failed (the message repeats the command line).
    """
    argv = resolve_command(name) + list(args)
    shown = shlex.join([name] + list(args))
    print(f"$ {shown}", flush=True)
    process = subprocess.Popen(argv, cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                               text=True)
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    if process.wait() != 0:
        raise RuntimeError(f"stage command failed with exit status {process.returncode}: "
                           f"{shown} (in {cwd})")
    return "".join(lines)


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Stage:
    """One step of the demo: commands to run, what they produce.

    Attributes:
      name: str. Key in demo_state.json.
      title: str. What the stage does, for the progress lines.
      commands: list of (console script, args), run in order.
      outputs: paths (relative to the workdir) deleted when the stage starts clean.
      done: fn(workdir) -> bool. Whether the outputs are all there.
      after: fn(workdir, stdouts) or None. Runs after the commands (e.g. saves output).
    """
    name: str
    title: str
    commands: list[tuple[str, list[str]]]
    outputs: list[str]
    done: Callable[[str], bool]
    after: Callable[[str, list[str]], None] | None = None


def _exists(*parts: str) -> Callable[[str], bool]:
    return lambda workdir: all(os.path.exists(os.path.join(workdir, p)) for p in parts)


def data_stages(s: DemoSettings) -> list[Stage]:
    """Synthetic videos, then their clip records."""
    synth = Stage("synth", "synthetic videos (motion + appearance classes)", [(
        "sports1m-synth",
        ["--output_dir=synth", "--classes=mixed", f"--videos_per_class={s.videos_per_class}",
         f"--num_frames={s.num_frames}", f"--size={s.video_size}", f"--seed={s.seed}"])],
        ["synth"], _exists("synth/synthetic.json", "synth/test.csv"))
    convert = Stage("convert", "clip records for train, val and test", [(
        "sports1m-convert",
        [f"--manifest=synth/{split}.csv", "--labels=synth/classes.txt", "--output_dir=records",
         f"--split={split}", "--num_shards=2", f"--frame_size={s.frame_size}",
         f"--workers={s.workers}", f"--seed={s.seed}"]) for split in ("train", "val", "test")],
        ["records"], _exists("records/dataset.json"))
    return [synth, convert]


def model_stages(s: DemoSettings) -> list[Stage]:
    """Training and evaluation of each model."""
    stages = []
    for model in MODELS:
        steps = s.steps[model]
        every = min(s.eval_every, steps)
        stages.append(Stage(f"train_{model}", f"train {model} ({steps} steps)", [(
            "sports1m-train",
            [f"--model={model}", f"--width={s.width}", f"--input_size={s.input_size}",
             "--train_files=records/train-*", "--val_files=records/val-*",
             f"--model_dir=runs/{model}", f"--train_steps={steps}", f"--eval_every={every}",
             f"--checkpoint_every={every}", f"--log_every={max(1, min(25, steps))}",
             f"--batch_size={s.batch_size}", f"--shuffle_buffer={s.shuffle_buffer}",
             f"--optimizer={s.optimizer}",
             f"--learning_rate={s.learning_rate}", f"--input_scale={s.input_scale}",
             f"--kernel_init={s.kernel_init}", f"--dropout={s.dropout}", f"--seed={s.seed}"])],
            [f"runs/{model}"], _exists(f"runs/{model}/model.keras")))
    for model in MODELS:
        stages.append(Stage(f"eval_{model}", f"evaluate {model} on the test videos", [(
            "sports1m-eval",
            [f"--model_dir=runs/{model}", "--eval_files=records/test-*",
             f"--output_dir=reports/{model}", f"--clips_per_video={s.eval_clips}",
             "--noprogress"])],
            [f"reports/{model}", f"runs/{model}/eval"],
            _exists(f"reports/{model}/metrics.json", f"reports/{model}/predictions.csv")))
    return stages


def read_report(workdir: str, model: str) -> dict:
    """A model's test metrics.json."""
    with open(os.path.join(workdir, "reports", model, "metrics.json")) as f:
        return json.load(f)


def best_model(workdir: str) -> str:
    """The model with the higher test video Hit@1 (then clip Hit@1; ties: the first)."""
    scores = {m: read_report(workdir, m) for m in MODELS}
    return max(MODELS, key=lambda m: (scores[m]["video_hit_at_1"], scores[m]["clip_hit_at_1"]))


def held_out_videos(workdir: str) -> list[tuple[str, str]]:
    """The first motion-class and the first appearance-class video of the test split.

    Returns:
      [(path relative to the workdir, true class)].
    """
    with open(os.path.join(workdir, "synth", "synthetic.json")) as f:
        info = json.load(f)
    with open(os.path.join(workdir, "synth", "test.csv"), newline="") as f:
        rows = list(csv.reader(f))
    picked = []
    for group in (info["motion_classes"], info["appearance_classes"]):
        for path, label in rows:
            if label in group:
                picked.append((os.path.join("synth", path), label))
                break
    return picked


def serving_stages(workdir: str, s: DemoSettings) -> list[Stage]:
    """Export of the better model and predictions on held-out videos (needs the reports)."""
    best = best_model(workdir)
    # TF Serving warmup records need tensorflow-serving-api (the `serving` extra).
    warmup = [] if importlib.util.find_spec("tensorflow_serving") else ["--nowarmup"]
    export = Stage("export", f"export {best} (the better test video Hit@1)", [(
        "sports1m-export",
        [f"--model_dir=runs/{best}", "--export_dir=serving", f"--name={best}", "--version=1",
         f"--frame_size={s.frame_size}"] + warmup)],
        ["serving"], _exists(f"serving/{best}/1/saved_model.pb"))
    videos = held_out_videos(workdir)

    def save_predictions(workdir: str, stdouts: list[str]) -> None:
        results = [json.loads(line) for line in stdouts[0].splitlines() if line.strip()]
        for result, (_, label) in zip(results, videos):
            result["true_class"] = label
        with open(os.path.join(workdir, "predictions.json"), "w") as f:
            json.dump(results, f, indent=1)

    predict = Stage("predict", "predict held-out test videos with the SavedModel", [(
        "sports1m-predict",
        [f"--saved_model=serving/{best}", "--json"] + [path for path, _ in videos])],
        ["predictions.json"], _exists("predictions.json"), after=save_predictions)
    return [export, predict]


# ---------------------------------------------------------------------------
# Resumption
# ---------------------------------------------------------------------------
def load_state(workdir: str) -> dict:
    """demo_state.json: stage name -> {"commands": [[script, args...]], "finished": bool}."""
    path = os.path.join(workdir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def save_state(workdir: str, state: dict) -> None:
    """Writes demo_state.json atomically (a kill never leaves half a file)."""
    path = os.path.join(workdir, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def prepare_workdir(workdir: str, restart: bool) -> None:
    """Creates the workdir, or checks that it is a demo's (and empties it with `restart`).

    Raises:
      app.UsageError: the folder holds other files and no demo_state.json.
    """
    if os.path.isdir(workdir) and os.listdir(workdir):
        if not os.path.exists(os.path.join(workdir, STATE_FILE)):
            raise app.UsageError(f"--workdir {workdir} holds files but no {STATE_FILE}: it is "
                                 "not a demo workdir; choose an empty or new folder")
        if restart:
            print(f"--restart: deleting {workdir}", flush=True)
            shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(workdir, STATE_FILE)):
        save_state(workdir, {})


def run_stage(workdir: str, stage: Stage, state: dict, upstream_ran: bool,
              number: str) -> bool:
    """Runs a stage unless it finished before with the same commands.

    Returns:
      True when the stage ran (so every later stage must run too).
    """
    commands = [[name] + args for name, args in stage.commands]
    recorded = state.get(stage.name)
    same = recorded is not None and recorded["commands"] == commands
    if same and recorded["finished"] and not upstream_ran and stage.done(workdir):
        print(f"\n==> [{number}] {stage.title}: done in an earlier run, skipped", flush=True)
        return False
    resume = same and not recorded["finished"] and not upstream_ran
    print(f"\n==> [{number}] {stage.title}" + (" (resuming an interrupted run)" if resume
                                               else ""), flush=True)
    if not resume:
        for output in stage.outputs:
            path = os.path.join(workdir, output)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    state[stage.name] = {"commands": commands, "finished": False}
    save_state(workdir, state)
    started = time.time()
    stdouts = [run_command(name, args, cwd=workdir) for name, args in stage.commands]
    if stage.after:
        stage.after(workdir, stdouts)
    state[stage.name] = {"commands": commands, "finished": True,
                         "seconds": round(time.time() - started, 1)}
    save_state(workdir, state)
    print(f"<== {stage.title}: {time.time() - started:.0f} s", flush=True)
    return True


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------
def group_video_hits(workdir: str, model: str) -> dict[str, float | None]:
    """Video Hit@1 over the motion classes and over the appearance classes."""
    with open(os.path.join(workdir, "synth", "synthetic.json")) as f:
        info = json.load(f)
    groups = {"motion": set(info["motion_classes"]),
              "appearance": set(info["appearance_classes"])}
    hits = {g: [] for g in groups}
    with open(os.path.join(workdir, "reports", model, "predictions.csv"), newline="") as f:
        for row in csv.DictReader(f):
            for group, names in groups.items():
                if set(row["labels"].split(";")) & names:
                    hits[group].append(int(row["hit_at_1"]))
    return {g: (sum(h) / len(h) if h else None) for g, h in hits.items()}


def summary_table(workdir: str) -> str:
    """The results table and where everything is, as printed at the end."""
    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"

    rows = ["| model | clip Hit@1 | video Hit@1 | video Hit@1, motion classes | "
            "video Hit@1, appearance classes | test videos |",
            "| --- | --- | --- | --- | --- | --- |"]
    for model in MODELS:
        report = read_report(workdir, model)
        groups = group_video_hits(workdir, model)
        rows.append(f"| {model} | {pct(report['clip_hit_at_1'])} | "
                    f"{pct(report['video_hit_at_1'])} | {pct(groups['motion'])} | "
                    f"{pct(groups['appearance'])} | {report['videos']} |")
    best = best_model(workdir)
    lines = rows + [""]
    with open(os.path.join(workdir, "predictions.json")) as f:
        for result in json.load(f):
            top = result.get("top_k", [{}])[0]
            lines.append(f"sports1m-predict {result['video']}: true class {result['true_class']}"
                         f", predicted {top.get('name', '?')} "
                         f"(p={top.get('probability', float('nan')):.3f})"
                         if "error" not in result else
                         f"sports1m-predict {result['video']}: ERROR {result['error']}")
    root = os.path.abspath(workdir)
    lines += [
        "",
        f"models:       {', '.join(os.path.join(root, 'runs', m, 'model.keras') for m in MODELS)}",
        f"TensorBoard:  tensorboard --logdir {os.path.join(root, 'runs')}",
        f"reports:      {os.path.join(root, 'reports')}/<model>/ (metrics.json, "
        "predictions.csv, confusion_matrix.png)",
        f"SavedModel:   {os.path.join(root, 'serving', best, '1')} "
        f"(TF Serving config {os.path.join(root, 'serving', 'models.config')})",
    ]
    return "\n".join(lines)


def run_demo(workdir: str, settings: DemoSettings, restart: bool = False) -> str:
    """Runs (or resumes) every stage; returns the summary table.

    Args:
      workdir: str. Folder of the run (created).
      settings: `DemoSettings`.
      restart: bool. Delete a previous demo run in `workdir` first.

    Returns:
      The printed summary (Markdown table and paths).
    """
    started = time.time()
    prepare_workdir(workdir, restart)
    state = load_state(workdir)
    print(f"sports1m-demo in {os.path.abspath(workdir)}; each stage prints the command it runs",
          flush=True)
    upstream_ran = False
    stages = data_stages(settings) + model_stages(settings)
    total = len(stages) + 2
    for i, stage in enumerate(stages, start=1):
        upstream_ran |= run_stage(workdir, stage, state, upstream_ran, f"{i}/{total}")
    # Which model to export is known only once both are evaluated.
    for i, stage in enumerate(serving_stages(workdir, settings), start=len(stages) + 1):
        upstream_ran |= run_stage(workdir, stage, state, upstream_ran, f"{i}/{total}")
    table = summary_table(workdir)
    print(f"\n==> results (test split)\n{table}\n\nsports1m-demo finished in "
          f"{time.time() - started:.0f} s", flush=True)
    return table


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Declares the command's flags (at run time: other commands' modules, imported in
    one process by tests, declare flags of the same names, e.g. --seed)."""
    defaults = DemoSettings()
    flags.DEFINE_string("workdir", "demo_run", "Folder of the demo run (created).")
    flags.DEFINE_bool("quick", False, "Smoke run: tiny sizes, 1 training step per model.")
    flags.DEFINE_bool("restart", False, "Delete a previous demo run in --workdir first.")
    flags.DEFINE_integer("seed", defaults.seed, "Seed of data, initialisation and sampling.")
    flags.DEFINE_integer("videos_per_class", None,
                         f"Videos per class, 60/20/20% train/val/test "
                         f"(default {defaults.videos_per_class}).")
    flags.DEFINE_integer("input_size", None,
                         f"Model input (crop) size (default {defaults.input_size}); stored "
                         "frames are 8 pixels larger.")
    flags.DEFINE_float("width", None, f"Width multiplier (default {defaults.width}).")
    flags.DEFINE_integer("single_frame_steps", None,
                         f"Training steps of single_frame "
                         f"(default {defaults.steps['single_frame']}).")
    flags.DEFINE_enum("optimizer", None, ["adam", "sgd"],
                      f"sports1m-train --optimizer (default {defaults.optimizer}; sgd with "
                      "--learning_rate=0.001 --input_scale=1 --kernel_init=glorot_uniform is the "
                      "paper's recipe).")
    flags.DEFINE_float("learning_rate", None,
                       f"Learning rate (default {defaults.learning_rate}).")
    flags.DEFINE_float("input_scale", None,
                       f"sports1m-train --input_scale (default {defaults.input_scale}).")
    flags.DEFINE_enum("kernel_init", None, ["he_normal", "glorot_uniform"],
                      f"sports1m-train --kernel_init (default {defaults.kernel_init}; "
                      "glorot_uniform with sgd).")
    flags.DEFINE_integer("slow_fusion_steps", None,
                         f"Training steps of slow_fusion "
                         f"(default {defaults.steps['slow_fusion']}).")


def settings_from_flags() -> DemoSettings:
    """`DemoSettings` of the command line (`--quick` first, then any size flag)."""
    base = DemoSettings.quick(FLAGS.seed) if FLAGS.quick else DemoSettings(seed=FLAGS.seed)
    changes = {}
    if FLAGS.videos_per_class is not None:
        changes["videos_per_class"] = FLAGS.videos_per_class
    if FLAGS.input_size is not None:
        changes.update(input_size=FLAGS.input_size, frame_size=FLAGS.input_size + 8,
                       video_size=FLAGS.input_size + 8)
    for name in ("width", "optimizer", "learning_rate", "input_scale", "kernel_init"):
        if FLAGS[name].value is not None:
            changes[name] = FLAGS[name].value
    steps = dict(base.steps)
    for model in MODELS:
        value = FLAGS[f"{model}_steps"].value
        if value is not None:
            if value < 1:
                raise app.UsageError(f"--{model}_steps must be positive, got {value}")
            steps[model] = value
    return dataclasses.replace(base, steps=steps, **changes)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        run_demo(FLAGS.workdir, settings_from_flags(), restart=FLAGS.restart)
    except RuntimeError as e:
        raise SystemExit(f"sports1m-demo: {e}; fix the cause and re-run the same command "
                         "to resume") from None


def run() -> None:
    define_flags()
    cli.entry(main)()


if __name__ == "__main__":
    run()
