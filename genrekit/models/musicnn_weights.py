"""The musicnn weights: fetched once from PyPI, checked, converted to Keras 3 and loaded from disk.

musicnn's authors publish their trained models only inside the ``musicnn==0.1.0`` wheel on PyPI
(ISC license), as TF1 checkpoints beside code that needs TF1 graph mode and numpy < 1.17. So the
package is never imported: :func:`ensure_musicnn_weights` runs ``python -m pip download`` (the
user's own index settings apply), checks the wheel's sha256, reads the checkpoints of
MSD_musicnn and MTT_musicnn with TensorFlow's checkpoint reader, and writes, under
``<PRETRAINED_DIR>/musicnn/``::

    MSD_musicnn.weights.h5   MTT_musicnn.weights.h5   manifest.json

Each file is written to a temporary name and renamed into place; the manifest is written last
and holds each weights file's sha256, which :func:`load_musicnn` checks before using it, so a
half-written or altered file is refused, never used. The manifest also records the source
(wheel name and sha256) and each model's 50 tags (read from the wheel's ``configuration.py``).
"""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genrekit.errors import ChecksumError, DownloadError, ModelError
from genrekit.fileio import file_digest, replacing, write_json_atomic
from genrekit.models.musicnn import MODELS, N_TAGS, build_musicnn, keras_weights_from_checkpoint
from genrekit.settings import default_value

log = logging.getLogger(__name__)

REQUIREMENT = "musicnn==0.1.0"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
WHEEL_SIZE = 29_292_476
LICENSE = "ISC (musicnn, Jordi Pons and Xavier Serra)"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1  # bump when the port's layers or the file layout change: older folders are rebuilt
FETCH_COMMAND = "python fetch_backbone.py"
PIP_TIMEOUT_SECONDS = 1800
# The wheel's configuration.py holds each model's tag list under these names.
_TAG_VARIABLES = {"MSD": "MSD_LABELS", "MTT": "MTT_LABELS"}
_DATASETS = {"MSD": "Million Song Dataset", "MTT": "MagnaTagATune"}


def default_weights_dir() -> Path:
    """``<pretrained_dir>/musicnn`` of the package defaults: where the converted weights live unless a
    run or a script names another folder (fetch_backbone.py passes config.py's PRETRAINED_DIR)."""
    return Path(default_value("pretrained_dir")) / "musicnn"


def weights_file(model: str) -> str:
    """The file name of a model's Keras weights, e.g. ``MSD_musicnn.weights.h5``."""
    return f"{model}.weights.h5"


# --- Fetch ----------------------------------------------------------------------------------------


def download_wheel(dest: str | os.PathLike, pip_args: Sequence[str] = ()) -> Path:
    """``python -m pip download musicnn==0.1.0 --no-deps`` into ``dest``; the wheel's path.

    Parameters
    ----------
    dest : str or PathLike
        An existing folder.
    pip_args : sequence of str
        Extra pip options, e.g. ``["--no-index", "--find-links", folder]``.

    Raises
    ------
    DownloadError
        pip failed (offline, index unreachable, no such file): one line with pip's last error
        and the command to run.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        REQUIREMENT,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        *pip_args,
    ]
    log.info("fetching %s with pip (%s)", REQUIREMENT, " ".join(cmd[1:]))
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadError(
            f"cannot fetch the musicnn weights: pip did not run ({exc}); {_fetch_hint()}"
        ) from None
    wheels = sorted(Path(dest).glob("musicnn-*.whl"))
    if result.returncode != 0 or not wheels:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines or ["no wheel downloaded"]
        raise DownloadError(
            f"cannot fetch the musicnn weights: `pip download {REQUIREMENT}` failed ({errors[-1]}); {_fetch_hint()}"
        )
    return wheels[0]


def _fetch_hint() -> str:
    return (
        f"run `{FETCH_COMMAND}` where the package index is reachable, "
        f"or `{FETCH_COMMAND} --wheel {WHEEL_NAME}` with the wheel downloaded elsewhere"
    )


def verify_wheel(path: str | os.PathLike, sha256: str = WHEEL_SHA256) -> None:
    """Refuse a wheel whose sha256 is not ``sha256`` (ChecksumError naming the file and both sums)."""
    actual = file_digest(path, "sha256")
    if actual != sha256:
        raise ChecksumError(
            f"{path}: sha256 {actual} is not the published {REQUIREMENT} wheel's {sha256}; refused, nothing written"
        )


def read_tags(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    """Each model's tags, read (never imported) from the wheel's ``musicnn/configuration.py``."""
    source = wheel.read("musicnn/configuration.py").decode("utf-8")
    found: dict[str, list[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value  # type: ignore[assignment]
    tags: dict[str, list[str]] = {}
    for model in MODELS:
        variable = _TAG_VARIABLES[model.split("_")[0]]
        if variable not in found:
            raise ModelError(f"{WHEEL_NAME}: musicnn/configuration.py has no {variable}")
        values = ast.literal_eval(found[variable])  # type: ignore[arg-type]
        if not (
            isinstance(values, list) and len(values) == N_TAGS and all(isinstance(v, str) for v in values)
        ):
            raise ModelError(f"{WHEEL_NAME}: {variable} is not a list of {N_TAGS} tags")
        tags[model] = values
    return tags


def convert_wheel(wheel_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Convert the checkpoints of a verified musicnn wheel to Keras weights in ``out_dir``.

    Writes ``<model>.weights.h5`` for each of :data:`MODELS` (temp name, then rename) and returns
    the manifest to write after them (the caller writes it last).
    """
    from genrekit.backend import keras, tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel_path = Path(wheel_path)
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="musicnn-ckpt-") as tmp, zipfile.ZipFile(wheel_path) as wheel:
        tags = read_tags(wheel)
        names = set(wheel.namelist())
        for model in MODELS:
            ckpt = Path(tmp) / model
            ckpt.mkdir()
            for member in (".index", ".data-00000-of-00001"):
                name = f"musicnn/{model}/{member}"
                if name not in names:
                    raise ModelError(f"{wheel_path}: no {name} in the wheel")
                (ckpt / member).write_bytes(wheel.read(name))
            # The checkpoints' prefix is the folder itself (files ".index", ".data-...").
            reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt) + os.sep)

            def get_tensor(name: str, reader: Any = reader, model: str = model) -> Any:
                if not reader.has_tensor(name):
                    raise ModelError(f"{wheel_path}: checkpoint {model} has no variable {name}")
                return reader.get_tensor(name)

            net = build_musicnn(n_tags=N_TAGS, name=model)
            for layer, values in keras_weights_from_checkpoint(get_tensor).items():
                try:
                    net.get_layer(layer).set_weights(values)
                except ValueError as exc:
                    raise ModelError(f"{wheel_path}: {model} layer {layer} does not fit ({exc})") from None
            final = out_dir / weights_file(model)
            with replacing(final) as part:  # keeps the suffix Keras wants (.weights.h5)
                net.save_weights(part)
                digest = file_digest(part, "sha256")
            models[model] = {
                "file": final.name,
                "sha256": digest,
                "dataset": _DATASETS[model.split("_")[0]],
                "tags": tags[model],
            }
            log.info("wrote %s", final)
    return {
        "format_version": FORMAT_VERSION,
        "source": f"pypi:{REQUIREMENT} ({WHEEL_NAME})",
        "source_sha256": WHEEL_SHA256,
        "license": LICENSE,
        "converted_with": {"keras": keras.__version__, "tensorflow": tf.__version__},
        "models": models,
    }


# --- Manifest and loading -------------------------------------------------------------------------


def read_manifest(weights_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The manifest of a weights folder, or None when there is none (or it is unreadable or old)."""
    import json

    path = Path(weights_dir or default_weights_dir()) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
        return None
    models = data.get("models")
    if not isinstance(models, Mapping):
        return None
    for model in MODELS:
        entry = models.get(model)
        if not isinstance(entry, Mapping) or any(key not in entry for key in ("file", "sha256", "tags")):
            return None
    return dict(data)


def check_weights_file(weights_dir: str | os.PathLike, manifest: Mapping[str, Any], model: str) -> Path:
    """The path of a model's weights after checking its sha256 against the manifest.

    Raises
    ------
    ModelError
        The file is missing, or its sha256 differs (half-written, truncated or altered).
    """
    entry = manifest["models"][model]
    path = Path(weights_dir) / entry["file"]
    if not path.is_file():
        raise ModelError(f"{path}: missing; run `{FETCH_COMMAND}` to fetch the musicnn weights again")
    if file_digest(path, "sha256") != entry["sha256"]:
        raise ModelError(
            f"{path}: sha256 differs from {MANIFEST_NAME} (half-written or altered file), refused; "
            f"run `{FETCH_COMMAND}` to fetch the musicnn weights again"
        )
    return path


def _complete(weights_dir: Path) -> dict[str, Any] | None:
    manifest = read_manifest(weights_dir)
    if manifest is None:
        return None
    try:
        for model in MODELS:
            check_weights_file(weights_dir, manifest, model)
    except ModelError as exc:
        log.warning("%s", exc)
        return None
    return manifest


def ensure_musicnn_weights(
    weights_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
    wheel: str | os.PathLike | None = None,
    pip_args: Sequence[str] = (),
    expected_sha256: str = WHEEL_SHA256,
) -> Path:
    """Make sure the converted musicnn weights are in ``weights_dir``; fetch and convert when not.

    Parameters
    ----------
    weights_dir : str or PathLike, optional
        Default :func:`default_weights_dir` (``fma_data/pretrained/musicnn``).
    force : bool
        Fetch and convert again even when complete, verified weights are there.
    wheel : str or PathLike, optional
        A ``musicnn-0.1.0`` wheel already on disk (no pip run); its sha256 is checked all the same.
    pip_args : sequence of str
        Extra options for ``pip download`` (e.g. ``--index-url URL``).
    expected_sha256 : str
        The wheel's sha256 (the published one).

    Returns
    -------
    pathlib.Path
        The weights folder, holding ``manifest.json`` and one ``.weights.h5`` per model.

    Raises
    ------
    DownloadError
        pip failed (offline...): the message names the command to run.
    ChecksumError
        The wheel is not the published one: refused, nothing written.
    """
    out = Path(weights_dir or default_weights_dir())
    if not force and _complete(out) is not None:
        log.info("musicnn weights in %s are complete and verified", out)
        return out
    with tempfile.TemporaryDirectory(prefix="musicnn-wheel-") as tmp:
        path = Path(wheel) if wheel is not None else download_wheel(tmp, pip_args)
        if not path.is_file():
            raise DownloadError(f"{path}: no such wheel file")
        verify_wheel(path, expected_sha256)
        out.mkdir(parents=True, exist_ok=True)
        # Until the new manifest is written the folder reads as "no weights", never as stale ones.
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        manifest = convert_wheel(path, out)
    write_json_atomic(out / MANIFEST_NAME, manifest)
    log.info("musicnn weights ready in %s", out)
    return out


def load_musicnn(
    model: str = "MSD_musicnn", weights_dir: str | os.PathLike | None = None, *, fetch: bool = True
) -> Any:
    """A musicnn port with its pretrained weights, fetched on first use.

    Parameters
    ----------
    model : str
        ``MSD_musicnn`` (Million Song Dataset tags) or ``MTT_musicnn`` (MagnaTagATune).
    weights_dir : str or PathLike, optional
        Default :func:`default_weights_dir`.
    fetch : bool
        When the folder has no manifest: fetch and convert (True), or raise ModelError naming
        the command (False). A weights file whose sha256 differs from the manifest's is always
        refused, never fetched over silently.

    Returns
    -------
    keras.Model
        See :func:`genrekit.models.musicnn.build_musicnn`; its tags: :func:`musicnn_tags`.
    """
    if model not in MODELS:
        raise ModelError(f"model={model!r} must be one of {', '.join(MODELS)}")
    out = Path(weights_dir or default_weights_dir())
    manifest = read_manifest(out)
    if manifest is None:
        if not fetch:
            raise ModelError(f"{out}: no musicnn weights; run `{FETCH_COMMAND}`")
        ensure_musicnn_weights(out)
        manifest = read_manifest(out)
        assert manifest is not None
    path = check_weights_file(out, manifest, model)
    net = build_musicnn(n_tags=len(manifest["models"][model]["tags"]), name=model)
    net.load_weights(path)
    return net


def musicnn_tags(model: str = "MSD_musicnn", weights_dir: str | os.PathLike | None = None) -> list[str]:
    """The 50 tags of a model's taggram, in output order, from the weights folder's manifest."""
    manifest = read_manifest(weights_dir)
    if manifest is None:
        raise ModelError(
            f"{Path(weights_dir or default_weights_dir())}: no musicnn weights; run `{FETCH_COMMAND}`"
        )
    return list(manifest["models"][model]["tags"])
