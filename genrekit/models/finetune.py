"""Fine-tuning musicnn: the pretrained backbone and a run's trained heads, trained together.

The usual two steps of transfer learning (Keras' guide "Transfer learning & fine-tuning"): first
train the heads on the frozen backbone's cached embeddings (``--backbone musicnn``, minutes on a
CPU), then train the heads and the backbone's upper layers together, from those heads, at a low
learning rate (``--fine_tune_from RUN``). Starting from trained heads matters: heads that start
random send large, noisy gradients into the pretrained layers and undo what they learned.

The model (:func:`build_fine_tuned`) takes musicnn's input patches ``(187, 96)``
(:class:`~genrekit.features.musicnn.MusicnnPatches`), runs the Keras port of musicnn with its
pretrained weights, takes the embedding the heads were trained on (``penultimate``, a pool, or
both pools) and feeds the heads model of the run, with its normalization statistics. Which
backbone layers learn (``FINE_TUNE_LAYERS``):

- ``backend``: the dense layer that makes the 200-value penultimate embedding (needs the
  ``penultimate`` output; the pools come before it);
- ``midend``: the three mid-end convolutions, and the dense layer above when the heads take
  ``penultimate``;
- ``all``: also the front-end convolutions (the timbral and temporal filters).

Every batch normalization of the backbone stays frozen, in inference mode (its moving statistics
are musicnn's, from a million songs; a few thousand patches would only blur them), as the Keras
guide recommends; a batch norm with ``trainable = False`` runs in inference mode in Keras 3 even
while the model trains. musicnn's dropout before its penultimate dense layer (0.5) stays on while
training, as in musicnn's own training: Keras 3 passes the outer ``training`` flag to a nested
model's layers, so calling the backbone with ``training=False`` would not turn it off.
``keras.layers`` only: any Keras backend.

Cost: every training step runs the whole backbone forward (~2.8 GFLOP per patch, the
front-end convolutions ~90% of it) and back through the layers that learn: ~16 patches/s on a
2-core CPU (``benchmarks/bench_balancing.py`` row 10), ~18 h per fma_large epoch of 1,065,740
patches there. On a CPU, train the heads; fine-tune on a GPU.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrekit.datasets.labels import LEVELS
from genrekit.errors import ConfigError
from genrekit.models.io import load_model
from genrekit.models.musicnn import N_MELS, PATCH_FRAMES
from genrekit.models.musicnn_weights import load_musicnn
from genrekit.settings import FINE_TUNE_LAYERS  # backend, midend, all
from genrekit.train.run_config import load_training_config

if TYPE_CHECKING:
    from genrekit.datasets.base import LabelledDataset
    from genrekit.models.registry import ModelSpec
    from genrekit.settings import Settings

log = logging.getLogger(__name__)

_BACKEND = ("penultimate_dense",)
_MIDEND = ("midend_1", "midend_2", "midend_3")
_AFTER_PENULTIMATE = ("logits",)  # musicnn's own tags
_AFTER_POOLS = ("pool_bn", "penultimate_dense", "penultimate", "logits")


def learning_layers(layers: str, output: str) -> tuple[str, ...] | None:
    """Names of the backbone layers with weights that learn (None: every one before ``output``).

    Raises
    ------
    ConfigError
        For an unknown choice, or ``backend`` with a pooled output (no learning layer before it).
    """
    if layers not in FINE_TUNE_LAYERS:
        raise ConfigError(f"fine_tune_layers={layers!r} must be one of {', '.join(FINE_TUNE_LAYERS)}")
    if layers == "all":
        return None
    if layers == "backend":
        if output != "penultimate":
            raise ConfigError(
                f"fine_tune_layers='backend' trains the layer that makes the penultimate embedding; the "
                f"heads take {output!r}, which comes before it: use 'midend' or 'all'"
            )
        return _BACKEND
    return _MIDEND + (_BACKEND if output == "penultimate" else ())


def freeze_for_fine_tuning(backbone: Any, layers: str, output: str) -> list[str]:
    """Set which of ``backbone``'s layers learn; return their names in the model's order.

    Layers after ``output`` (the taggram's; the back end's for a pool) get no gradient and never learn.
    """
    from genrekit.backend import keras

    chosen = learning_layers(layers, output)
    unused = _AFTER_PENULTIMATE if output == "penultimate" else _AFTER_POOLS
    learning = []
    for layer in backbone.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = not is_bn and layer.name not in unused and (chosen is None or layer.name in chosen)
        if layer.trainable and layer.weights:
            learning.append(layer.name)
    return learning


def build_fine_tuned(backbone: Any, heads: Any, *, output: str, layers: str = "midend") -> Any:
    """The backbone and the heads as one model: musicnn patches in, the heads' outputs out.

    Parameters
    ----------
    backbone : keras.Model
        A musicnn port with its pretrained weights
        (:func:`genrekit.models.musicnn_weights.load_musicnn`); its layers' ``trainable`` flags
        are set here.
    heads : keras.Model
        The trained heads (:func:`genrekit.models.heads.build_heads`) of a ``--backbone musicnn``
        run, taking ``output``.
    output : str
        The embedding the heads take (:data:`genrekit.features.musicnn.OUTPUTS`).
    layers : str
        One of :data:`FINE_TUNE_LAYERS`.

    Returns
    -------
    keras.Model
        Named ``musicnn_fine_tuned``; input ``(batch, 187, 96)``, outputs the heads' dict.
    """
    from genrekit.backend import keras

    freeze_for_fine_tuning(backbone, layers, output)
    patches = keras.Input((PATCH_FRAMES, N_MELS), name="patches")
    outs = backbone(patches)
    if output == "pools":
        embedding = keras.layers.Concatenate(name="pools_max_mean")([outs["max_pool"], outs["mean_pool"]])
    else:
        embedding = outs[output]
    want = tuple(heads.input_shape[1:])
    if tuple(embedding.shape[1:]) != want:
        raise ConfigError(f"the heads take {want}, musicnn's {output!r} is {tuple(embedding.shape[1:])}")
    # The heads' outputs under their own names again (a nested model's outputs carry its name),
    # float32 as the heads compute them (under mixed precision too).
    outputs = {
        level: keras.layers.Identity(name=level, dtype="float32")(y) for level, y in heads(embedding).items()
    }
    return keras.Model(patches, outputs, name="musicnn_fine_tuned")


def heads_run(path: str | os.PathLike, config_filename: str) -> tuple[dict[str, Any], Path]:
    """The training config and model file of a finished ``--backbone musicnn`` run (folder or model file).

    Raises
    ------
    ConfigError
        When the path holds no finished run, or a run of another front end (naming what to do).
    """

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config_path = folder / config_filename
    if not config_path.is_file():
        raise ConfigError(
            f"fine_tune_from: {folder} holds no finished run ({config_filename} missing); train the heads "
            "first: python balanced_trainer.py --backbone musicnn --output_dir RUN"
        )
    config = load_training_config(config_path)
    frontend = config.get("frontend") or {}
    if frontend.get("name") != "musicnn_embeddings":
        raise ConfigError(
            f"fine_tune_from: {folder} was trained on {frontend.get('name', 'mel_segments')!r}, not on musicnn "
            "embeddings; fine-tuning starts from heads trained with --backbone musicnn"
        )
    model_path = folder / config["model_file"]
    if not model_path.is_file():
        raise ConfigError(f"fine_tune_from: {model_path} is missing (the run's model file)")
    return config, model_path


# --- the registry's hooks (kind ``musicnn_fine_tuned`` of genrekit.models.registry.MODELS) ----------


def build_from_spec(spec: ModelSpec) -> Any:
    """musicnn (pretrained) and the heads of the run ``settings.fine_tune_from``, as one model.

    The heads come with their normalization statistics; the spec's are the same (:func:`source_norm`).
    """

    settings = spec.settings
    config, model_path = heads_run(settings.fine_tune_from, settings.training_config_filename)
    heads = load_model(model_path, configure=False)  # the run's float policy stays (mixed on a GPU)
    backbone = load_musicnn(settings.musicnn_model, Path(settings.pretrained_dir) / "musicnn")
    output = config["frontend"]["params"]["output"]
    model = build_fine_tuned(backbone, heads, output=output, layers=settings.fine_tune_layers)
    learning = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    log.info(
        "fine-tuning %s (%s) from the heads of %s: backbone layers that learn: %s",
        settings.musicnn_model,
        output,
        settings.fine_tune_from,
        ", ".join(learning),
    )
    return model


def source_norm(settings: Settings, processed: LabelledDataset) -> dict[str, Any]:
    """The heads run's normalization, after checking it fits this run (checkpoint, vocabularies).

    Raises
    ------
    ConfigError
        Naming the run and every difference.
    """

    config, _ = heads_run(settings.fine_tune_from, settings.training_config_filename)
    params = config["frontend"]["params"]
    learning_layers(settings.fine_tune_layers, params["output"])
    problems = []
    if params["model"] != settings.musicnn_model:
        problems.append(
            f"its heads take {params['model']}, this run asks musicnn_model {settings.musicnn_model}"
        )
    for level in LEVELS:
        theirs = config["vocabularies"][level]["genre_ids"]
        if list(theirs) != list(processed.vocabs[level].genre_ids):
            problems.append(f"its {level} vocabulary ({len(theirs)} genres) differs from this dataset's")
    if problems:
        raise ConfigError(f"fine_tune_from {settings.fine_tune_from}: " + "; ".join(problems))
    norm = config.get("normalization") or {}
    return {"mean": norm["mean"], "std": norm["std"]}


def check_output_dir(settings: Settings, out: Path) -> None:
    """Refuse to fine-tune into the heads run itself (it is kept)."""
    if Path(settings.fine_tune_from).resolve() in (out.resolve(), out.resolve() / settings.model_filename):
        raise ConfigError(
            f"fine_tune_from {settings.fine_tune_from} is the output folder itself: fine-tune into another "
            "--output_dir (the heads run is kept)"
        )
