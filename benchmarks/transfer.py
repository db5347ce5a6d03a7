"""The paper's UCF-101 transfer study (its Tables 3 and 4): every regime on every split.

    python benchmarks/transfer.py                     # synthetic UCF-101 layout, ~2-3 min on 2 cores
    python benchmarks/transfer.py --splits=1 --regimes=top1,scratch --train_steps=30   # quicker
    # the real thing: UCF101.rar and the recognition splits unpacked under --ucf_root
    # (UCF-101/<Class>/v_*.avi and ucfTrainTestlist/), a Sports-1M Slow Fusion run
    python benchmarks/transfer.py --ucf_root=/data/ucf101 --init_from=runs/slow \
        --work_dir=/data/ucf_study --train_steps=20000 --batch_size=32 --learning_rate=1e-3

For each split k, `trainlist0k.txt` and `testlist0k.txt` are converted with
`--manifest_format=ucf101` (--clips_per_video, paper: 50; with --clip_overlap,
on by default, a video with fewer disjoint 16-frame windows gets overlapping
ones, as the paper's 50 from ~7 s videos must); for each regime,
`sports1m_tf.training.finetune.finetune` trains a run from --init_from and
`sports1m_tf.evaluation.evaluate.evaluate` scores the test videos (every clip in 4 views,
averaged per video). The tables average the splits: Table 3, video accuracy
(Hit@1) per regime; Table 4, mAP per UCF-101 class group
(`sports1m_tf/resources/ucf101_groups.json`). Markdown on stdout and in
`--output` (.md), numbers in `--output` (.json), with the paper's figures beside.

Without --ucf_root the study runs on a synthetic dataset in UCF-101's layout
(25 groups, class folders `Class/v_Class_gXX_cYY.avi`, classInd.txt, the three
split lists, split k testing groups 7k-6..7k) whose five classes, one per UCF-101
group, are the five categories a single frame of `sports1m_tf.synthetic` can show
(four coloured shapes and the disc of the motion classes). The source model
stands in for Sports-1M: a single-frame net trained, with
`sports1m_tf.training.train`, on a COARSER task over the same videos (red square + green
triangle, blue cross + yellow ring, disc), so its top layers merge what the
target separates: the situation the paper gives for `top1` trailing `top3`.
Figures from it show the protocol working, not UCF-101 results.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
from absl import app, flags, logging

import common

flags.DEFINE_string("ucf_root", None, "Folder holding UCF-101/ (videos) and ucfTrainTestlist/ "
                    "(classInd.txt, trainlist0N.txt, testlist0N.txt); default: synthetic.")
flags.DEFINE_string("init_from", None, "Source model: a training run folder or a .keras file "
                    "(default with synthetic data: a source trained here).")
flags.DEFINE_string("work_dir", "/tmp/sports1m_transfer_study",
                    "Records, runs and reports (conversions are reused when rerun).")
flags.DEFINE_list("regimes", ["scratch", "top1", "top3", "all"], "Regimes to run.")
flags.DEFINE_list("splits", ["1", "2", "3"], "UCF-101 splits to run.")
flags.DEFINE_integer("train_steps", None, "Fine-tuning steps per run (synthetic: 60; required "
                     "with --ucf_root).")
flags.DEFINE_integer("batch_size", None, "Clips per step (synthetic: 16; UCF-101: 32).")
flags.DEFINE_float("learning_rate", None, "Fine-tuning learning rate (synthetic: 0.01; "
                   "UCF-101: 1e-3).")
flags.DEFINE_float("dropout", None, "Dropout before retrained layers (UCF-101: 0.9 as in the "
                   "paper; synthetic: 0.5, as its 60-step runs diverge at 0.9).")
flags.DEFINE_integer("clips_per_video", 50, "Clips per video, converted and evaluated (paper: 50).")
flags.DEFINE_bool("clip_overlap", True, "Convert with overlapping windows where a video has fewer "
                  "disjoint ones than --clips_per_video (sports1m-convert --clip_overlap).")
flags.DEFINE_integer("frame_size", 200, "Stored frame size of the real data.")
flags.DEFINE_string("strategy", "auto", "sports1m-train's --strategy.")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
common.define_output("transfer", "JSON output; the Markdown goes beside it (.md).")
FLAGS = flags.FLAGS

REGIME_TITLES = {"scratch": "Train from scratch", "top1": "Fine-tune top layer",
                 "top3": "Fine-tune top 3 layers", "all": "Fine-tune all layers"}
# Karpathy et al. 2014, Slow Fusion on UCF-101 (3-fold accuracy; Table 4 mAP per group).
PAPER_TABLE3 = {"scratch": 41.3, "top1": 64.1, "top3": 65.4, "all": 62.2}
PAPER_TABLE4 = {
    "Human-Object Interaction": {"scratch": 0.26, "top1": 0.52, "top3": 0.55},
    "Body-Motion Only": {"scratch": 0.32, "top1": 0.52, "top3": 0.57},
    "Human-Human Interaction": {"scratch": 0.40, "top1": 0.65, "top3": 0.68},
    "Playing Musical Instruments": {"scratch": 0.42, "top1": 0.46, "top3": 0.65},
    "Sports": {"scratch": 0.57, "top1": 0.80, "top3": 0.79},
    "All groups": {"scratch": 0.44, "top1": 0.66, "top3": 0.68},
}
ALL_GROUPS = "All groups"

# Defaults that differ between the short synthetic study and the real one.
DEFAULTS = {"synthetic": dict(train_steps=60, batch_size=16, learning_rate=0.01, dropout=0.5),
            "ucf101": dict(train_steps=None, batch_size=32, learning_rate=1e-3, dropout=0.9)}

# Synthetic stand-in: frames, model and the class → category mapping.
SYNTH_FRAME, SYNTH_SIZE, SYNTH_WIDTH = 40, 32, 0.125
SYNTH_TARGET = {                       # UCF-101 class (its group) ← synthetic category
    "PizzaTossing": "red_square",      # Human-Object Interaction
    "JumpingJack": "green_triangle",   # Body-Motion Only
    "SalsaSpin": "blue_cross",         # Human-Human Interaction
    "PlayingDaf": "yellow_ring",       # Playing Musical Instruments (a ring, a frame drum)
    "Archery": "still",                # Sports (the motion classes' disc)
}
SYNTH_SOURCE = {"red_or_green": ["red_square", "green_triangle"],
                "blue_or_yellow": ["blue_cross", "yellow_ring"], "disc": ["still", "zoom_in"]}
UCF_GROUPS, TEST_GROUPS_PER_SPLIT = 25, 7


# ---------------------------------------------------------------------------
# Synthetic data and source
# ---------------------------------------------------------------------------
def _render(category: str, key: list[int], frames: int = 20):
    from sports1m_tf import synthetic
    rng = np.random.default_rng(key + list(category.encode()))
    video, _ = synthetic.render_video(category, num_frames=frames, size=48, centre_bias=True,
                                      rng=rng)
    return video


def write_synthetic_ucf101(root: str) -> str:
    """UCF-101's layout with the synthetic classes: UCF-101/, ucfTrainTestlist/. Returns root."""
    from sports1m_tf import synthetic
    videos, lists = os.path.join(root, "UCF-101"), os.path.join(root, "ucfTrainTestlist")
    if os.path.exists(os.path.join(lists, "testlist03.txt")):
        return root
    os.makedirs(lists, exist_ok=True)
    names = list(SYNTH_TARGET)
    rel = {}
    for k, name in enumerate(names, start=1):
        for g in range(1, UCF_GROUPS + 1):
            rel[(name, g)] = f"{name}/v_{name}_g{g:02d}_c01.avi"
            synthetic.write_video(os.path.join(videos, rel[(name, g)]),
                                  _render(SYNTH_TARGET[name], [7, g, k]), 24.0, "MJPG")
    with open(os.path.join(lists, "classInd.txt"), "w") as f:
        f.writelines(f"{k} {name}\n" for k, name in enumerate(names, start=1))
    for split in (1, 2, 3):
        test = range(TEST_GROUPS_PER_SPLIT * (split - 1) + 1, TEST_GROUPS_PER_SPLIT * split + 1)
        with open(os.path.join(lists, f"trainlist{split:02d}.txt"), "w") as f:
            f.writelines(f"{rel[(n, g)]} {k}\n" for k, n in enumerate(names, start=1)
                         for g in range(1, UCF_GROUPS + 1) if g not in test)
        with open(os.path.join(lists, f"testlist{split:02d}.txt"), "w") as f:
            f.writelines(f"{rel[(n, g)]}\n" for n in names for g in test)
    return root


def train_synthetic_source(work_dir: str, steps: int = 200) -> str:
    """The stand-in for a Sports-1M run: real video files → converter → `train`. Returns the run."""
    from sports1m_tf import synthetic
    from sports1m_tf.training import train
    from tfrecord_tools.convert import convert

    run_dir = os.path.join(work_dir, "source_run")
    if os.path.exists(os.path.join(run_dir, "model.keras")):
        return run_dir
    videos = os.path.join(work_dir, "source_videos")
    lines = []
    for label, categories in SYNTH_SOURCE.items():
        for c, category in enumerate(categories):
            for v in range(24):
                path = os.path.join(videos, label, f"{category}_{v:03d}.avi")
                synthetic.write_video(path, _render(category, [11, v], frames=32), 24.0, "MJPG")
                lines.append(f"{os.path.relpath(path, videos)},{label}\n")
    with open(os.path.join(videos, "train.csv"), "w") as f:
        f.writelines(lines)
    records = os.path.join(work_dir, "source_records")
    convert(os.path.join(videos, "train.csv"), output_dir=records, num_shards=2,
            clips_per_video=2, frame_size=SYNTH_FRAME, progress=False)
    config = train.make_config(model="single_frame", width=SYNTH_WIDTH, input_size=SYNTH_SIZE,
                               dropout=0.5, train_files=[os.path.join(records, "train-*")],
                               model_dir=run_dir, batch_size=32, train_steps=steps,
                               learning_rate=0.01, log_every=50, checkpoint_every=steps,
                               seed=FLAGS.seed, strategy=FLAGS.strategy)
    train.train(config)
    return run_dir


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------
def convert_split(ucf_root: str, split: int, out: str, frame_size: int) -> dict:
    """Records of one split (train and test shards in one folder). Reruns are free."""
    from tfrecord_tools.convert import convert
    sections = {}
    for part in ("train", "test"):
        sections[part] = convert(
            os.path.join(ucf_root, "ucfTrainTestlist", f"{part}list{split:02d}.txt"),
            output_dir=out, manifest_format="ucf101", video_root=os.path.join(ucf_root, "UCF-101"),
            split=part, num_shards=4, clips_per_video=FLAGS.clips_per_video,
            clip_overlap=FLAGS.clip_overlap,
            frame_size=frame_size, workers=1, progress=False)
    return {"train": os.path.join(out, "train-*"), "test": os.path.join(out, "test-*"),
            "classes": sections["train"]["classes"],
            "videos": {p: s["videos_converted"] for p, s in sections.items()},
            "clips": {p: s["clips"] for p, s in sections.items()}}


def run_one(init_from: str, regime: str, records: dict, run_dir: str, report_dir: str,
            hyper: dict) -> dict:
    """Fine-tunes one regime on one split and evaluates it: accuracy, mAP, group mAP."""
    from sports1m_tf import metrics, run_folder
    from sports1m_tf.evaluation import evaluate
    from sports1m_tf.settings import EvalConfig
    from sports1m_tf.training import finetune

    started = time.time()
    if os.path.exists(run_dir):  # a study rerun starts its runs over
        shutil.rmtree(run_dir)
    steps = hyper["train_steps"]
    finetune.finetune(init_from, regime, dropout=hyper["dropout"], train_files=[records["train"]],
                      model_dir=run_dir, train_steps=steps, batch_size=hyper["batch_size"],
                      learning_rate=hyper["learning_rate"],
                      checkpoint_every=min(steps, 1000), log_every=max(1, min(steps // 4, 100)),
                      seed=FLAGS.seed, strategy=FLAGS.strategy)
    trained = time.time()
    report = evaluate.evaluate([run_folder.restore_model(run_dir)], [records["test"]],
                               output_dir=report_dir, class_names=records["classes"],
                               config=EvalConfig(clips_per_video=FLAGS.clips_per_video,
                                                 batch_size=64, montage_videos=0,
                                                 progress=False),
                               write_tensorboard=False)
    ap = np.array([np.nan if report["per_class_ap"][c] is None else report["per_class_ap"][c]
                   for c in records["classes"]])
    groups = metrics.group_map(ap, metrics.ucf101_groups(records["classes"]))
    groups[ALL_GROUPS] = metrics.mean_average_precision(ap_per_class=ap)
    return {"video_accuracy": report["video_hit_at_1"], "mAP": report["mAP"],
            "clip_hit_at_1": report["clip_hit_at_1"], "videos": report["videos"],
            "group_mAP": {g: None if np.isnan(v) else float(v) for g, v in groups.items()},
            "train_seconds": trained - started, "eval_seconds": time.time() - trained}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(runs: dict, regimes: list[str], splits: list[int]) -> dict:
    """Split averages: Table 3 (accuracy per regime) and Table 4 (group mAP per regime)."""
    table3 = {r: {"video_accuracy": _mean(runs[r][s]["video_accuracy"] for s in splits),
                  "mAP": _mean(runs[r][s]["mAP"] for s in splits),
                  "per_split": {s: runs[r][s]["video_accuracy"] for s in splits}}
              for r in regimes}
    groups = list(runs[regimes[0]][splits[0]]["group_mAP"])
    table4 = {g: {r: _mean(runs[r][s]["group_mAP"][g] for s in splits) for r in regimes}
              for g in groups}
    return {"table3": table3, "table4": table4}


def _fmt(value, percent=False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.2f}"


def markdown(summary: dict, regimes: list[str], splits: list[int], settings: dict) -> str:
    """The two tables in the paper's layout, with the paper's figures beside."""
    lines = [f"Table 3: video accuracy (Hit@1) on UCF-101-layout data, mean of split(s) "
             f"{', '.join(map(str, splits))}; {settings['data']}.", "",
             "| Model | accuracy | mAP | " + " | ".join(f"split {s}" for s in splits)
             + " | paper (Slow Fusion, UCF-101) |",
             "| --- | --- | --- | " + " | ".join("---" for _ in splits) + " | --- |"]
    for r in regimes:
        row = summary["table3"][r]
        lines.append(f"| {REGIME_TITLES[r]} | {_fmt(row['video_accuracy'], True)} | "
                     f"{_fmt(row['mAP'])} | "
                     + " | ".join(_fmt(row["per_split"][s], True) for s in splits)
                     + f" | {PAPER_TABLE3[r]}% |")
    lines += ["", "Table 4: mAP per UCF-101 class group (mean of the splits); paper in brackets.",
              "", "| Group | " + " | ".join(f"mAP {REGIME_TITLES[r].lower()}" for r in regimes)
              + " |", "| --- | " + " | ".join("---" for _ in regimes) + " |"]
    for group, row in summary["table4"].items():
        cells = []
        for r in regimes:
            paper = PAPER_TABLE4.get(group, {}).get(r)
            cells.append(_fmt(row[r]) + (f" ({paper:.2f})" if paper is not None else ""))
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    regimes = [r for r in ("scratch", "top1", "top3", "all") if r in FLAGS.regimes]
    unknown = sorted(set(FLAGS.regimes) - set(regimes))
    if unknown:
        raise app.UsageError(f"unknown regimes {unknown}")
    splits = sorted(int(s) for s in FLAGS.splits)
    work = FLAGS.work_dir
    os.makedirs(work, exist_ok=True)
    started = time.time()
    if FLAGS.ucf_root:
        if not FLAGS.init_from:
            raise app.UsageError("--ucf_root needs --init_from (a Sports-1M training run)")
        ucf_root, init_from, frame_size = FLAGS.ucf_root, FLAGS.init_from, FLAGS.frame_size
        data = f"UCF-101 at {ucf_root}"
    else:
        ucf_root = write_synthetic_ucf101(os.path.join(work, "synthetic_ucf101"))
        init_from = FLAGS.init_from or train_synthetic_source(work)
        frame_size = SYNTH_FRAME
        data = "synthetic stand-in (see benchmarks/transfer.py)"
    mode = "ucf101" if FLAGS.ucf_root else "synthetic"
    hyper = {k: FLAGS[k].value if FLAGS[k].value is not None else v
             for k, v in DEFAULTS[mode].items()}
    if hyper["train_steps"] is None:
        raise app.UsageError("--ucf_root needs --train_steps")
    prepared = time.time()
    runs: dict = {r: {} for r in regimes}
    split_info = {}
    for split in splits:
        records = convert_split(ucf_root, split, os.path.join(work, f"records_split{split}"),
                                frame_size)
        split_info[split] = {k: records[k] for k in ("videos", "clips")}
        for regime in regimes:
            name = f"split{split}_{regime}"
            runs[regime][split] = run_one(init_from, regime, records,
                                          os.path.join(work, "runs", name),
                                          os.path.join(work, "reports", name), hyper)
            logging.info("%s: video accuracy %.3f, mAP %.3f", name,
                         runs[regime][split]["video_accuracy"], runs[regime][split]["mAP"])
    summary = summarise(runs, regimes, splits)
    settings = {k: FLAGS[k].value for k in ("ucf_root", "clips_per_video", "clip_overlap", "seed",
                                            "strategy")}
    settings.update(hyper, data=data, init_from=init_from, splits=splits, regimes=regimes)
    text = markdown(summary, regimes, splits, settings)
    print(text)
    result = {"settings": settings, "splits": split_info, "runs": runs, **summary,
              "paper": {"table3": PAPER_TABLE3, "table4": PAPER_TABLE4},
              "seconds": {"prepare": prepared - started, "total": time.time() - started}}
    common.write_results(FLAGS.output, result, indent=1)
    with open(os.path.splitext(FLAGS.output)[0] + ".md", "w") as f:
        f.write(text)
    print(json.dumps({"table3": summary["table3"], "table4": summary["table4"],
                      "seconds": result["seconds"]}, indent=1))


if __name__ == "__main__":
    app.run(main)
