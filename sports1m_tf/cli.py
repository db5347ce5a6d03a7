"""How every `sports1m-*` command starts and ends.

A command module defines its absl flags at import time and a `main(argv)`; its
console script is `run = cli.entry(main)`. The entry:

- keeps TensorFlow's C++ start-up chatter (CPU-feature banners, the `cuInit`
  line on machines without a GPU driver) off the console unless the user set
  `TF_CPP_MIN_LOG_LEVEL`, and prefers the oneDNN CPU kernels (both only count
  before TensorFlow is imported, which is why command modules import it lazily
  or after this module);
- answers `--help` with the command's own docstring and flags;
- reads `--recipe=NAME`, a recipe shipped inside the package (`sports1m_tf/recipes/`),
  as absl's `--flagfile` of that file, so flags after it override it and a wheel
  install has the recipes wherever it runs;
- turns a `UserError` (a mistake in the command's input), an error about a
  path (missing, a file where a folder belongs, not writable), or a full disk
  (naming the file being written), into one line on stderr and exit status 1,
  with no traceback;
- stops on Ctrl-C (SIGINT) with exit status 130, even when the main thread is
  inside a long TensorFlow call that never returns to Python.

This module imports no TensorFlow and nothing of the project but
`cpu_kernels` (and `tfrecord_tools.fileio`, which tells a full disk, when an
error needs it), so the light commands (conversion, synthetic data) stay light.

Why some imports of TensorFlow are inside functions: a console script imports
its command module before `run()` calls the entry, so a command module and
whatever it imports at the top must not import TensorFlow (nor
`sports1m_tf.data`, whose package import loads it); the variables above would
come too late. Those modules import it in the functions that need it; modules
reached only from there (`optimization`, `summaries`, `models`, `data`) import
it at the top. docs/design.md ("Package layering") says the same for readers.
"""
from __future__ import annotations

import atexit
import importlib.resources
import os
import re
import signal
import socket
import sys
import threading
from typing import Callable, Optional, Sequence

from absl import app, flags

# Seconds the main thread gets to unwind after Ctrl-C before the process is ended
# from a watchdog thread: a TensorFlow op that does not return (an input pipeline
# that skips every record, a blocked RPC) never lets Python raise KeyboardInterrupt.
INTERRUPT_GRACE_SECONDS = 5.0
EXIT_INTERRUPTED = 130
EXIT_USER_ERROR = 1

# Flags of these packages are the commands' own; absl's and TensorFlow's are not.
_OWN_PACKAGES = ("sports1m_tf", "tfrecord_tools", "export", "benchmarks")


RECIPE_SUFFIX = ".flags"


class UserError(Exception):
    """A mistake in a command's input: a path, a flag value, a file's contents.

    The message is the whole report the user sees (name the path or flag, the
    problem and the fix); the entry prints it on one line without a traceback.
    """


def json_text(value) -> str:
    """`value` as strict JSON: NaN and infinities become null (JSON has no NaN)."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), allow_nan=False)


_QUIET_MARKER = "SPORTS1M_TF_QUIET"


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up log lines unless the user chose a level.

    TF 2.21 logs through absl's C++ logging before reading `TF_CPP_MIN_LOG_LEVEL`
    (the oneDNN and CUDA-stub lines, twice), so the variable alone is not enough:
    the process's stderr also passes through `_NativeLogFilter`.
    """
    # The marker tells a command started by another (the demo's stages) that the
    # level was ours, not the user's, so it filters too.
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ and not os.environ.get(_QUIET_MARKER):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_QUIET_MARKER] = "1"
    _NativeLogFilter.install()


def quiet_tensorflow_import(command: str) -> None:
    """For a command module that imports TensorFlow at import time: quiets it there
    too, but only when the process runs that command (not when a test or library
    imports the module)."""
    if os.path.basename(sys.argv[0] if sys.argv else "") == command:
        quiet_tensorflow()


class _NativeLogFilter:
    """Forwards file descriptor 2 to the real stderr, less TensorFlow's C++ chatter.

    C++ code writes to the descriptor, not to `sys.stderr`, so the filter sits at
    the descriptor: a pipe, read by a daemon thread. Dropped: C++ INFO/WARNING
    lines (`I1203 12:00:00.000 123 file.cc:45] ...`, among them tf.data's
    per-record "Error raised" warnings), absl's "before InitializeLog" notice and
    the `cuInit` error of machines without a GPU driver. Python's own log lines
    (`file.py:45]`) and every other line pass.
    """

    _NOISE = re.compile(
        r"^(?:[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+\.(?:cc|h|cpp):\d+\]"
        r"|WARNING: All log messages before absl::InitializeLog\(\)"
        r"|E\d{4} .*(?:cuInit|cuda_diagnostics|cuda_executor|cudart_stub))")

    @classmethod
    def install(cls) -> None:
        try:
            sys.stderr.flush()
            real = os.dup(2)
            read, write = os.pipe()
            os.dup2(write, 2)
            os.close(write)
        except OSError:
            return
        thread = threading.Thread(target=cls._forward, args=(read, real), daemon=True,
                                  name="stderr-filter")
        thread.start()

        def restore() -> None:
            # Puts the real stderr back (closing the pipe's writer), then lets the
            # thread pass on what is left. Child processes may hold the pipe open.
            try:
                sys.stderr.flush()
                os.dup2(real, 2)
            except (OSError, ValueError):
                return
            thread.join(timeout=2.0)

        atexit.register(restore)

    @classmethod
    def _forward(cls, read: int, real: int) -> None:
        with os.fdopen(read, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [ln for ln in lines
                        if not cls._NOISE.match(ln.decode("utf-8", "replace"))]
                if kept:
                    os.write(real, b"\n".join(kept) + b"\n")
            if pending and not cls._NOISE.match(pending.decode("utf-8", "replace")):
                os.write(real, pending)


def _command_help(main_module: str) -> str:
    """The command's docstring and the flags defined by this project's modules."""
    module = sys.modules.get(main_module)
    lines = [(module.__doc__ or "").strip(), ""] if module is not None else []
    by_module = flags.FLAGS.flags_by_module_dict()
    # absl files a script's flags under its path, not under "__main__".
    mine = {main_module} | ({sys.argv[0]} if main_module == "__main__" and sys.argv else set())
    # A script's helper modules beside it (benchmarks/common.py) are its own too.
    here = os.path.dirname(getattr(module, "__file__", None) or "") if module else ""
    beside = lambda name: bool(here) and os.path.dirname(
        getattr(sys.modules.get(name), "__file__", None) or "") == here
    own = [name for name in by_module
           if name in mine or name.split(".")[0] in _OWN_PACKAGES or beside(name)]
    # The command's module first, then shared flag modules in name order.
    own.sort(key=lambda name: (name not in mine, name))
    for name in own:
        text = flags.FLAGS.module_help(name)
        if text.strip():
            lines.append(text)
    lines.append("\nAlso: --helpfull for every flag, including TensorFlow's and absl's.")
    return "\n".join(lines)


def recipe_names() -> list[str]:
    """The recipes shipped in the package (`paper`, `motion_cpu`, the demo's sizes)."""
    folder = importlib.resources.files("sports1m_tf") / "recipes"
    return sorted(f.name[:-len(RECIPE_SUFFIX)] for f in folder.iterdir()
                  if f.name.endswith(RECIPE_SUFFIX))


def recipe_path(name: str) -> str:
    """The file of the packaged recipe `name` (a bare name, or with `.flags`).

    Raises:
      UserError: no recipe of that name ships with the package (lists those that do).
    """
    stem = name[:-len(RECIPE_SUFFIX)] if name.endswith(RECIPE_SUFFIX) else name
    if stem not in recipe_names():
        raise UserError(f"--recipe={name}: no such recipe; the package has "
                        f"{', '.join(recipe_names())} (--flagfile=FILE reads your own)")
    return str(importlib.resources.files("sports1m_tf") / "recipes" / (stem + RECIPE_SUFFIX))


def expand_recipes(argv: Sequence[str]) -> list[str]:
    """`argv` with each `--recipe=NAME` (or `--recipe NAME`) replaced, in place, by
    `--flagfile=` of the packaged file: flags after it still override it."""
    out, args = list(argv[:1]), iter(argv[1:])
    for arg in args:
        if arg == "--":
            out += [arg, *args]
            break
        if arg == "--recipe":
            arg = "--recipe=" + next(args, "")
        if arg.startswith("--recipe="):
            arg = "--flagfile=" + recipe_path(arg[len("--recipe="):])
        out.append(arg)
    return out


# Defined here, not by each command: every command takes it, and its value is read
# by `expand_recipes` before absl parses (absl's own --flagfile works the same way).
flags.DEFINE_string("recipe", None, "A recipe that ships with the package, e.g. paper or "
                    "motion_cpu: its flags, overridden by any given after it (your own "
                    "files: --flagfile=FILE).")


_WAKEUP_SOCKETS: list[socket.socket] = []

_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                FileExistsError)


def _path_error_text(e: OSError) -> str:
    """'PATH: problem (fix)' for an OSError about a path."""
    if e.filename is None or e.strerror is None:
        return str(e)
    hint = {PermissionError: "choose a path you can write to, or change its permissions",
            IsADirectoryError: "a file was expected here",
            NotADirectoryError: "a folder was expected here",
            FileExistsError: "move it away or choose another path"}.get(type(e), "check the path")
    return f"{e.filename}: {e.strerror.lower()} ({hint})"


def _exit_if_stuck_after_interrupt(grace: float) -> None:
    """Ends the process with status 130 `grace` seconds after SIGINT.

    Python runs signal handlers only between bytecodes, so a main thread inside a
    C++ call would ignore Ctrl-C. The C-level handler always writes the signal
    number to the wake-up fd, which this daemon thread reads.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    # Both ends must outlive this function: a collected socket closes its descriptor,
    # and the signal handler would then write into whatever file reuses that number.
    _WAKEUP_SOCKETS[:] = [reader, writer]
    try:
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
        return

    def watch() -> None:
        while True:
            data = reader.recv(64)
            if not data:
                return
            if signal.SIGINT in data:
                threading.Timer(grace, lambda: os._exit(EXIT_INTERRUPTED)).start()
                return

    threading.Thread(target=watch, name="interrupt-watchdog", daemon=True).start()


def entry(main: Callable[[list[str]], Optional[int]],
          define: Optional[Callable[[], None]] = None,
          *, grace_seconds: float = INTERRUPT_GRACE_SECONDS) -> Callable[[], None]:
    """The console-script function of a command.

    Args:
      main: the command's `main(argv) -> exit status or None`, as for `app.run`.
      define: defines the command's flags, when they are not defined at import
        (commands that share flag names define theirs only when run).
      grace_seconds: how long Ctrl-C waits for the command to unwind.

    Returns:
      A no-argument function that runs the command and exits the process.
    """

    def run(argv: Optional[Sequence[str]] = None) -> None:
        if define is not None:
            define()
        quiet_tensorflow()
        from sports1m_tf import cpu_kernels  # after the log level: it may log
        cpu_kernels.prefer_onednn()
        argv = list(sys.argv if argv is None else argv)
        if any(a in ("--help", "-h", "-?", "--helpshort") for a in argv[1:]):
            print(_command_help(main.__module__))
            sys.exit(0)
        _exit_if_stuck_after_interrupt(grace_seconds)
        prog = os.path.basename(argv[0]) if argv else main.__module__
        try:
            app.run(main, argv=expand_recipes(argv))
        except UserError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except _PATH_ERRORS as e:
            # A path that is missing, of the wrong kind or not writable: the user's to fix.
            print(f"{prog}: error: {_path_error_text(e)}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:
            # A full disk, however the writer reported it (OSError, TensorFlow's error).
            from tfrecord_tools import fileio
            if not fileio.is_disk_full(e):
                raise
            print(f"{prog}: error: {fileio.disk_full(e)}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return run
