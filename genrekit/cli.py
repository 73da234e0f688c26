"""What every command shares: its argument parser, its settings, error handling and logging set-up.

A command (:mod:`genrekit.commands`, run as ``genrekit NAME`` or through the repository's scripts)
reads the ``config.py`` of the folder it runs in, when there is one (:func:`working_config`), and
passes it to :func:`config_values`; the settings of a run are then the package defaults <
config.py < the ``--config`` JSON file < flags (:func:`settings_from_args`). The library never
imports this module.

A script's ``main(argv)`` is wrapped with :func:`script_main`, so any
:class:`~genrekit.errors.GenrekitError`, and any path the operating system refuses (a symlink loop,
a folder where a file belongs, no permission), ends the run with one ``error: ...`` line and exit
code 2 (the traceback goes to the run's log file at DEBUG level).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from genrekit.errors import ConfigError, GenrekitError
from genrekit.fileio import OutputKind

# The path checks live in genrekit.paths (the library uses them too); the scripts import them here.
from genrekit.paths import SETUP_HINTS, not_a_file, require_dir, resolved
from genrekit.settings import SPLIT_FILE_KEYS, Settings, checked_settings, default_value

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE = "run.log"
# An earlier run.log (appended to): empty, or lines of LOG_FORMAT ("2024-05-01 12:00:00,123 INFO ...").
RUN_LOG = OutputKind(
    "genrekit run log",
    lambda head: head == b"" or re.match(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", head) is not None,
)


def script_main(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a script's main so expected failures print one line and return exit code 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        quiet_tensorflow()
        tolerant_console()
        # A script may call another's main (quick_start runs the inspector): restore the caller's
        # logging afterwards instead of leaving it torn down.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            return main(argv) or 0
        except GenrekitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (OSError, RuntimeError) as exc:
            message = path_error(exc)
            if message is None:
                raise
            logging.getLogger(__name__).debug("path error", exc_info=True)
            print(f"error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: finished work is kept; run the same command again to go on", file=sys.stderr)
            return 130
        finally:
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
            root.setLevel(level)

    return wrapper


def path_error(exc: BaseException) -> str | None:
    """One line for an error about a path (``path: cause``); None for any other error.

    OSError names its file; pathlib on Python < 3.13 raises RuntimeError for a symlink loop.
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        names = " -> ".join(os.fsdecode(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{names}: {exc.strerror or exc}"
    if isinstance(exc, RuntimeError) and str(exc).startswith("Symlink loop from"):
        return (
            f"{str(exc).removeprefix('Symlink loop from ').strip(chr(39))}: symlink loop (cannot be resolved)"
        )
    return None


def tolerant_console() -> None:
    """Let the console show any file name: a character the terminal's encoding cannot write (a
    byte of a name that is not UTF-8, which Python keeps as a lone surrogate) is written escaped
    (``caf\\udce9.mp3``) instead of ending the run. stderr already does so; stdout does not."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):  # a stream replaced by a notebook or a test runner
                stream.reconfigure(errors="backslashreplace")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up messages (oneDNN, CUDA probing) off the console.

    Must run before TensorFlow is imported; a value the user set in the environment wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (notebooks and test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _ModelTraceFilter(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing" warning.

    Every model that predicts traces its predict step once per batch shape (full batches, then
    the last one). TensorFlow counts the traces of all models of a process together (its
    detector is keyed by the code of Keras's predict step, not by the model), so a script that
    loads a few models, an ensemble of three, say, is warned about work each model needs once.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def teardown_logging() -> None:
    """Remove the handlers :func:`setup_logging` added (closing is left to their owner)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_genrekit", False):
            root.removeHandler(handler)


def setup_logging(run_dir: str | Path | None = None, verbose: bool = False) -> None:
    """INFO (DEBUG with ``verbose``) to the console; DEBUG to ``run_dir/run.log`` when given."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    teardown_logging()
    console = _ConsoleHandler()
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    console._genrekit = True
    root.addHandler(console)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        # A file name that is not UTF-8 is logged escaped (caf\\udce9.mp3), never a logging error.
        logfile = logging.FileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8", errors="backslashreplace")
        logfile.setLevel(logging.DEBUG)
        logfile.setFormatter(logging.Formatter(LOG_FORMAT))
        logfile._genrekit = True
        root.addHandler(logfile)
    for noisy in ("matplotlib", "PIL", "numba", "urllib3", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tensorflow = logging.getLogger("tensorflow")
    if not any(isinstance(f, _ModelTraceFilter) for f in tensorflow.filters):
        tensorflow.addFilter(_ModelTraceFilter())


def script_parser(doc: str, *, description: str | None = None) -> argparse.ArgumentParser:
    """A script's parser: its docstring's first paragraph as the description, the rest verbatim below.

    Parameters
    ----------
    doc : str
        The script's ``__doc__``: a one-paragraph summary, then the commands to run it.
    description : str, optional
        Replaces the first paragraph as the description.
    """
    summary, _, usage = doc.partition("\n\n")
    return argparse.ArgumentParser(
        description=summary if description is None else description,
        epilog=usage,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_dataset_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """``--metadata`` and ``--audio``, the FMA folders, as every script that reads the dataset names them.

    ``default`` says where they come from when not given (config.py's METADATA_DIR and AUDIO_DIR
    unless told otherwise, e.g. ``"default: the training's"``).
    """
    metadata, audio = ("config.py METADATA_DIR", "config.py AUDIO_DIR") if default is None else (default,) * 2
    parser.add_argument("--metadata", help=f"folder with tracks.csv and genres.csv ({metadata})")
    parser.add_argument("--audio", help=f"folder with NNN/NNNNNN.mp3 ({audio})")


# Constants a config.py of before the written Settings computed from the others (a copy of the
# old full file still works): the Settings compute them now (input_shape, loss_weights, ...).
FORMER_DERIVED = frozenset({"INPUT_SHAPE", "LOSS_WEIGHTS", "DEMO_METADATA_DIR", "DEMO_AUDIO_DIR"})


#: The file a command reads from the folder it runs in: your settings on top of the defaults.
CONFIG_FILE = "config.py"


def working_config(folder: str | os.PathLike | None = None) -> ModuleType | None:
    """The ``config.py`` of ``folder`` (default: the working folder), run as a module; None if absent.

    Read from the file each time, never imported by name: a ``config`` module elsewhere on the
    path (another project's, an installed package) is never taken for yours, and the ``genrekit``
    command finds your settings in whatever folder you run it, as the repository's scripts do in
    the checkout.
    """
    path = Path(folder if folder is not None else os.getcwd()) / CONFIG_FILE
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a typo in the user's file: one line naming it, not a traceback
        raise ConfigError(f"{path}: cannot be read as Python ({type(exc).__name__}: {exc})") from exc
    return module


def config_values(module: ModuleType | None) -> dict[str, Any]:
    """The settings a config module sets: its UPPER_CASE names in lower case, checked.

    ``module`` is a ``config.py`` as :func:`working_config` read it (None: no file, no values). Names that start with
    ``_`` are the file's own helpers and are skipped, and so are the four constants an older
    config.py derived from the others (:data:`FORMER_DERIVED`).

    Raises
    ------
    ConfigError
        For a name that is not a setting or a value of the wrong type, naming the file and the key.
    """
    if module is None:
        return {}
    values = {
        name.lower(): value
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_") and name not in FORMER_DERIVED
    }
    return checked_settings(values, Path(getattr(module, "__file__", None) or f"{module.__name__}.py").name)


def config_settings(module: ModuleType | None) -> Settings:
    """The package defaults with ``module``'s settings on top (:func:`config_values`): what a
    script's defaults are before ``--config`` and flags."""
    return Settings.build(base=config_values(module))


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` flag every script takes."""
    parser.add_argument(
        "--config",
        metavar="JSON",
        help="JSON config file overriding config.py (e.g. examples/example_config.json)",
    )


def add_setting_arguments(
    parser: argparse.ArgumentParser,
    keys: Iterable[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
    base: Mapping[str, Any] | None = None,
) -> None:
    """Add one ``--key`` flag per setting, defaulting to None so only given flags override.

    Booleans get ``--key`` / ``--no-key``. ``aliases`` adds other names for a flag, e.g.
    ``{"num_epochs": ["--epochs"]}``. ``base`` (config.py's values, :func:`config_values`) gives
    the defaults the help shows; else the package's.
    """
    aliases, base = aliases or {}, base or {}
    for key in keys:
        default = base[key] if key in base else default_value(key)
        kind = type(default_value(key))
        help_text = f"default {default!r} (config.py {key.upper()})"
        names = [*aliases.get(key, ()), f"--{key}"]
        if kind is bool:
            parser.add_argument(
                *names, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                *names, dest=key, type=kind, default=None, metavar=key.upper(), help=help_text
            )


def add_split_file_argument(parser: argparse.ArgumentParser) -> None:
    """``--split_file SPLIT=FILE``, repeated: a published split's lists (settings ``split_file_<split>``)."""
    parser.add_argument(
        "--split_file",
        action="append",
        metavar="SPLIT=FILE",
        help="a published split of a folder:/csv: collection, one list per split (training, validation, "
        "test), one audio path a line relative to the collection's root, e.g. --split_file "
        "training=train_filtered.txt; tracks listed in none are left out (config.py SPLIT_FILE_TRAINING...)",
    )


def split_file_overrides(values: Sequence[str] | None) -> dict[str, str]:
    """The settings of ``--split_file SPLIT=FILE`` flags; ConfigError for a malformed one, naming it."""
    overrides: dict[str, str] = {}
    for value in values or ():
        split, sep, path = value.partition("=")
        if not sep or split.strip() not in SPLIT_FILE_KEYS or not path.strip():
            raise ConfigError(
                f"--split_file {value!r} must be SPLIT=FILE with SPLIT one of {', '.join(SPLIT_FILE_KEYS)}"
            )
        key = SPLIT_FILE_KEYS[split.strip()]
        if key in overrides:
            raise ConfigError(f"--split_file {value!r}: the {split.strip()} split's list is given twice")
        # Absolute, as saved with the run: the evaluator rereads the lists from any folder.
        overrides[key] = str(Path(path.strip()).expanduser().resolve())
    return overrides


def settings_from_args(args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> Settings:
    """Settings from ``base`` (config.py's values), ``args.config`` and every setting flag in ``args``
    (``--split_file`` included, when the parser has it)."""
    overrides = {key: value for key, value in vars(args).items() if key in Settings.__dataclass_fields__}
    overrides.update(split_file_overrides(getattr(args, "split_file", None)))
    return Settings.build(getattr(args, "config", None), overrides, base=base)


__all__ = [
    "SETUP_HINTS",
    "add_config_argument",
    "add_dataset_arguments",
    "add_setting_arguments",
    "add_split_file_argument",
    "config_settings",
    "config_values",
    "not_a_file",
    "path_error",
    "quiet_tensorflow",
    "require_dir",
    "resolved",
    "script_main",
    "script_parser",
    "settings_from_args",
    "setup_logging",
    "split_file_overrides",
    "teardown_logging",
    "working_config",
]


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    """``--weight`` and ``--ensemble``: several runs predicting together (with ``--model`` repeated)."""
    parser.add_argument(
        "--weight",
        action="append",
        metavar="W",
        help="weight of the --model in the same position, for an ensemble (default 1 each, normalized "
        "to sum 1); or write --model PATH:W",
    )
    parser.add_argument(
        "--ensemble",
        metavar="JSON",
        help='an ensemble file {"members": [{"run": "runs/a", "weight": 2}, ...]} (paths relative to it); '
        "members of --model are added to it",
    )


def run_files(model: str | None, config_path: str | None, defaults: Settings) -> tuple[str, str | None]:
    """The model and training config a script was given: ``model`` (default the output folder's),
    a run folder's saved model, and the config beside it under ``defaults``' (config.py's) name
    when no ``config_path`` is given and it is there."""
    model = model or os.path.join(defaults.output_dir, defaults.model_filename)
    if os.path.isdir(model):  # a run folder: its saved model
        model = os.path.join(model, defaults.model_filename)
    if config_path is None:
        beside = os.path.join(os.path.dirname(model), defaults.training_config_filename)
        config_path = beside if os.path.isfile(beside) else None
    return model, config_path


def ensemble_from_args(args: argparse.Namespace, defaults: Settings | None = None) -> Any:
    """The :class:`~genrekit.evaluate.ensemble.Ensemble` of ``--model`` (repeated), ``--weight`` and
    ``--ensemble``; None for one model (which then runs exactly as without these options).
    ``defaults`` (config.py's settings) name the model and config files inside run folders."""
    models = args.model or []
    if args.ensemble is None and len(models) <= 1:
        from genrekit.evaluate.ensemble import parse_model_arg

        if args.weight or (models and parse_model_arg(models[0])[1] is not None):  # runs/a:2 alone
            raise ConfigError(
                "--weight weighs the members of an ensemble (as does --model PATH:W): give several --model "
                "or --ensemble"
            )
        return None
    if args.config:
        raise ConfigError(
            "--config names one model's training config: the members of an ensemble read theirs next to "
            "their models (or from 'config' in the ensemble file)"
        )
    from genrekit.evaluate.ensemble import Ensemble, FileNames

    names = (
        FileNames()
        if defaults is None
        else FileNames(defaults.model_filename, defaults.training_config_filename)
    )
    return Ensemble.from_args(models, args.weight, args.ensemble, names)
