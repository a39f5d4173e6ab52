"""Keeps TensorFlow's start-up logs off the terminal of the `relaxprune` command.

TensorFlow writes them while it is imported, which `import keras_relaxprune`
does before `cli.main` can run, and ignores `TF_CPP_MIN_LOG_LEVEL` for them
(they come before its logging is initialised). So when this process is the
command (`relaxprune ...` or `python -m keras_relaxprune_apps.cli ...`), importing
this module sends stderr to a scratch file until `release()`, which
`__init__.py` calls once its imports are done. If they fail, the scratch file
is printed at exit, so the traceback and TensorFlow's messages still show. In
any other program it does nothing.
"""

import atexit
import os
import sys
import tempfile

_QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2"}
_held = []  # (saved file descriptor 2, scratch file)


def _is_the_command():
    if os.path.basename(sys.argv[0]).split(".")[0] == "relaxprune":
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    for index, arg in enumerate(argv[1:], start=1):
        if arg == "-m":
            return argv[index + 1 : index + 2] in (
                ["keras_relaxprune_apps.cli"],
                ["keras_relaxprune_apps"],
            )
        if arg.startswith("-m"):
            return arg[2:] in ("keras_relaxprune_apps.cli", "keras_relaxprune_apps")
    return False


def hold():
    if _held or not _is_the_command():
        return
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        saved = os.dup(2)
    except OSError:  # no stderr: nothing to keep quiet
        return
    scratch = tempfile.TemporaryFile()
    sys.stderr.flush()
    os.dup2(scratch.fileno(), 2)
    _held.append((saved, scratch))
    atexit.register(release, replay=True)


def release(replay=False):
    """Gives stderr back; with `replay`, first prints what it held."""
    if not _held:
        return
    saved, scratch = _held.pop()
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    if replay:
        scratch.seek(0)
        os.write(2, scratch.read())
    scratch.close()


hold()
