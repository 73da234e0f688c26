"""musicnn (Pons & Serra, 2019) as a Keras 3 model, with its front end computed by our audio code.

The architecture is read from the ``musicnn==0.1.0`` package (``models.py``: ``build_musicnn`` with
``num_filt_midend=64``, ``num_units_backend=200``; used by MSD_musicnn and MTT_musicnn); this is
our own code, written with ``keras.layers`` only, so it runs on any Keras backend. Input: log-mel
patches ``(batch, frames, 96)``, time first, frequency second (187 frames = 3 s; any length
works, every pooling is global over time).

- **Front end**: batch norm of the input; timbral branches: 204 filters of 7 x 38 and 7 x 67
  (time x frequency; 0.4 and 0.7 of 96 bands) on the input zero-padded by 3 frames on both ends,
  'valid'; temporal branches: 51 filters of 128 x 1, 64 x 1 and 32 x 1 with TensorFlow's 'same'
  padding (for an even kernel k: (k - 1) // 2 frames before, k // 2 after; written out as explicit
  zero padding so that every backend pads alike). Each branch: conv, ReLU, batch norm, max over
  frequency. Concatenated: 204 + 204 + 51 * 3 = 561 values per frame.
- **Mid end**: three convs of 64 filters over 7 frames (zero-padded by 3, ReLU, batch norm); the
  second and third add their input (residuals). The front end and the three outputs are
  concatenated: 561 + 3 * 64 = 753 values per frame.
- **Back end**: max and mean over time (``max_pool``, ``mean_pool``: 753 each), interleaved as
  musicnn's ``flatten(concat([max, mean], axis=2))`` does (max0, mean0, max1, mean1, ...), batch
  norm, dropout 0.5, dense 200 + ReLU + batch norm (``penultimate``), dropout 0.5, dense 50,
  sigmoid (``taggram``).

Every batch norm is TF1's ``tf.compat.v1.layers.batch_normalization``: epsilon 1e-3 on the last
axis, ``(x - moving_mean) / sqrt(moving_variance + 1e-3) * gamma + beta`` at inference, the same
as Keras' ``BatchNormalization(epsilon=1e-3)``.

**The front end** (:func:`musicnn_patches`): musicnn's ``batch_data`` is ``librosa.load(sr=16000)``
(mono, soxr HQ in librosa >= 0.10), ``librosa.feature.melspectrogram`` with its defaults (power 2,
periodic Hann, centred frames, Slaney mel scale and area norm, fmin 0, fmax 8 kHz), then
``log10(10000 * mel + 1)`` and non-overlapping patches of 187 frames from frame 0 (a partial last
patch is dropped). We compute the same with :func:`genrekit.features.mel.load_track_segments`, in
float32. The original casts the mel spectrogram to **float16** before multiplying by 10,000:
``10000 * mel`` overflows to infinity where ``mel > 6.55`` (loud low bands), so those patches give
infinite inputs and NaN outputs there, and every other value is rounded to float16 (11-bit
mantissa, ~3e-4 relative; ``log10`` is also evaluated in float16). We do not reproduce that;
``tests/test_musicnn.py`` measures what it changes on a genuine FMA clip.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from genrekit.features.mel import FeatureParams, load_track_segments

MODELS = ("MSD_musicnn", "MTT_musicnn")
SAMPLE_RATE = 16000  # Hz, musicnn's configuration.SR
N_FFT = 512  # configuration.FFT_SIZE
HOP_LENGTH = 256  # configuration.FFT_HOP
N_MELS = 96  # configuration.N_MELS
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, hop_length=256) + 1
N_TAGS = 50
EMBEDDING_SIZE = 200  # the penultimate layer
POOL_SIZE = 753  # values per frame after the mid end, hence of max_pool and mean_pool
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default

_TIMBRAL_FILTERS = 204  # int(1.6 * 128)
_TEMPORAL_FILTERS = 51  # int(1.6 * 32)
_TIMBRAL_WIDTHS = (int(0.4 * N_MELS), int(0.7 * N_MELS))  # 38 and 67 mel bands
_TEMPORAL_LENGTHS = (128, 64, 32)  # frames
_MIDEND_FILTERS = 64

# The port's layers in the order musicnn creates its TF1 variables, with the checkpoint's names
# (tf.compat.v1.layers numbers each kind of layer in creation order).
LAYER_MAP: tuple[tuple[str, str], ...] = (
    ("input_bn", "batch_normalization"),
    ("timbral_38", "conv2d"),
    ("timbral_38_bn", "batch_normalization_1"),
    ("timbral_67", "conv2d_1"),
    ("timbral_67_bn", "batch_normalization_2"),
    ("temporal_128", "conv2d_2"),
    ("temporal_128_bn", "batch_normalization_3"),
    ("temporal_64", "conv2d_3"),
    ("temporal_64_bn", "batch_normalization_4"),
    ("temporal_32", "conv2d_4"),
    ("temporal_32_bn", "batch_normalization_5"),
    ("midend_1", "conv2d_5"),
    ("midend_1_bn", "batch_normalization_6"),
    ("midend_2", "conv2d_6"),
    ("midend_2_bn", "batch_normalization_7"),
    ("midend_3", "conv2d_7"),
    ("midend_3_bn", "batch_normalization_8"),
    ("pool_bn", "batch_normalization_9"),
    ("penultimate_dense", "dense"),
    ("penultimate", "batch_normalization_10"),
    ("logits", "dense_1"),
)


def build_musicnn(*, n_tags: int = N_TAGS, n_frames: int | None = None, name: str = "musicnn") -> Any:
    """The musicnn architecture, untrained: a functional Keras model with four named outputs.

    Parameters
    ----------
    n_tags : int
        Tags of the output layer (50 for MSD_musicnn and MTT_musicnn).
    n_frames : int, optional
        Frames per input patch; None accepts any length (musicnn was trained on 187).
    name : str
        The model's name.

    Returns
    -------
    keras.Model
        Input ``(batch, n_frames, 96)`` log-compressed mel; outputs a dict: ``taggram``
        (sigmoid, ``n_tags``), ``penultimate`` (200), ``mean_pool`` and ``max_pool`` (753 each).
    """
    from genrekit.backend import keras

    layers = keras.layers

    def bn(layer_name: str) -> Any:
        return layers.BatchNormalization(epsilon=BN_EPSILON, name=layer_name)

    patches = keras.Input((n_frames, N_MELS), name="patches")
    x = layers.Reshape((-1, N_MELS, 1), name="add_channel")(patches)
    x = bn("input_bn")(x)

    branches = []
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name="timbral_pad")(x)
    for width in _TIMBRAL_WIDTHS:
        y = layers.Conv2D(_TIMBRAL_FILTERS, (7, width), activation="relu", name=f"timbral_{width}")(padded)
        y = bn(f"timbral_{width}_bn")(y)
        y = layers.MaxPooling2D((1, N_MELS - width + 1), name=f"timbral_{width}_pool")(y)
        branches.append(layers.Reshape((-1, _TIMBRAL_FILTERS), name=f"timbral_{width}_squeeze")(y))
    for length in _TEMPORAL_LENGTHS:
        y = layers.ZeroPadding2D((((length - 1) // 2, length // 2), (0, 0)), name=f"temporal_{length}_pad")(x)
        y = layers.Conv2D(_TEMPORAL_FILTERS, (length, 1), activation="relu", name=f"temporal_{length}")(y)
        y = bn(f"temporal_{length}_bn")(y)
        y = layers.MaxPooling2D((1, N_MELS), name=f"temporal_{length}_pool")(y)
        branches.append(layers.Reshape((-1, _TEMPORAL_FILTERS), name=f"temporal_{length}_squeeze")(y))
    front = layers.Concatenate(name="frontend")(branches)  # (batch, frames, 561)

    mid = [front]
    h = front
    for i in (1, 2, 3):
        y = layers.ZeroPadding1D(3, name=f"midend_{i}_pad")(h)
        y = layers.Conv1D(_MIDEND_FILTERS, 7, activation="relu", name=f"midend_{i}")(y)
        y = bn(f"midend_{i}_bn")(y)
        h = y if i == 1 else layers.Add(name=f"midend_{i}_res")([y, h])
        mid.append(h)
    features = layers.Concatenate(name="midend")(mid)  # (batch, frames, 753)

    max_pool = layers.GlobalMaxPooling1D(name="max_pool")(features)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool")(features)
    pair = layers.Concatenate(name="pools")(
        [
            layers.Reshape((POOL_SIZE, 1), name="max_pool_col")(max_pool),
            layers.Reshape((POOL_SIZE, 1), name="mean_pool_col")(mean_pool),
        ]
    )
    h = layers.Flatten(name="pools_interleaved")(pair)
    h = bn("pool_bn")(h)
    h = layers.Dropout(0.5, name="pool_dropout")(h)
    h = layers.Dense(EMBEDDING_SIZE, activation="relu", name="penultimate_dense")(h)
    penultimate = bn("penultimate")(h)
    h = layers.Dropout(0.5, name="penultimate_dropout")(penultimate)
    logits = layers.Dense(n_tags, name="logits")(h)
    taggram = layers.Activation("sigmoid", name="taggram")(logits)
    outputs = {"taggram": taggram, "penultimate": penultimate, "mean_pool": mean_pool, "max_pool": max_pool}
    return keras.Model(patches, outputs, name=name)


def keras_weights_from_checkpoint(get_tensor: Any) -> dict[str, list[np.ndarray]]:
    """The port's weights per layer name, from a musicnn TF1 checkpoint.

    Parameters
    ----------
    get_tensor : callable
        ``name -> numpy array`` of the checkpoint's variables (``CheckpointReader.get_tensor``).

    Returns
    -------
    dict
        Layer name to the list :meth:`keras.layers.Layer.set_weights` takes. TF1 conv2d kernels
        ``(time, freq, in, out)`` are Keras Conv2D's layout; the mid end's ``(7, C, 1, 64)``
        kernels cover the whole feature axis, so they are Conv1D kernels ``(7, C, 64)``.
    """
    weights: dict[str, list[np.ndarray]] = {}
    for layer, var in LAYER_MAP:
        if var.startswith("batch_normalization"):
            names = ("gamma", "beta", "moving_mean", "moving_variance")
            weights[layer] = [np.asarray(get_tensor(f"{var}/{n}"), np.float32) for n in names]
            continue
        kernel = np.asarray(get_tensor(f"{var}/kernel"), np.float32)
        if layer.startswith("midend_"):
            kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], kernel.shape[3])
        weights[layer] = [kernel, np.asarray(get_tensor(f"{var}/bias"), np.float32)]
    return weights


def feature_params() -> FeatureParams:
    """musicnn's spectrogram parameters as our :class:`~genrekit.features.mel.FeatureParams`."""
    return FeatureParams(
        sample_rate=SAMPLE_RATE,
        duration=30.0,  # not used for placement: patches cover the whole file
        n_mels=N_MELS,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        fmin=0.0,
        fmax=SAMPLE_RATE / 2,
        num_segments=1,
        segment_frames=PATCH_FRAMES,
        min_segments=1,
    )


def musicnn_patches(path: str | os.PathLike) -> np.ndarray:
    """musicnn's input patches of an audio file, computed in float32 by our audio code.

    Parameters
    ----------
    path : str or PathLike
        An audio file libsndfile reads.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_patches, 187, 96)``: ``log10(10000 * mel + 1)``, non-overlapping patches from
        the start of the file (a partial last patch is dropped), time first as musicnn takes them.

    Raises
    ------
    AudioDecodeError
        The file cannot be decoded, or is shorter than one patch (3 s).
    """
    segments = load_track_segments(path, feature_params(), hop_frames=PATCH_FRAMES, compression="log10000")
    return np.ascontiguousarray(segments.transpose(0, 2, 1))


def predict_patches(model: Any, patches: np.ndarray, *, batch_size: int = 32) -> dict[str, np.ndarray]:
    """The model's outputs for ``patches`` ``(n, frames, 96)``, in batches, as float32 numpy arrays."""
    patches = np.asarray(patches, np.float32)
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(patches), batch_size):
        out = model.predict_on_batch(patches[i : i + batch_size])
        for key, value in out.items():
            parts.setdefault(key, []).append(np.asarray(value, np.float32))
    if not parts:
        return {name: np.zeros((0, size), np.float32) for name, size in _OUTPUT_SIZES.items()}
    return {key: np.concatenate(value) for key, value in parts.items()}


_OUTPUT_SIZES = {
    "taggram": N_TAGS,
    "penultimate": EMBEDDING_SIZE,
    "mean_pool": POOL_SIZE,
    "max_pool": POOL_SIZE,
}


def extract_embeddings(path: str | os.PathLike, model: Any, *, batch_size: int = 32) -> np.ndarray:
    """The 200-d penultimate embeddings of an audio file, one per 3-s patch.

    Parameters
    ----------
    path : str or PathLike
        An audio file.
    model : keras.Model
        A musicnn port with weights (:func:`genrekit.models.musicnn_weights.load_musicnn`).
    batch_size : int
        Patches per forward pass.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_patches, 200)``.
    """
    return predict_patches(model, musicnn_patches(path), batch_size=batch_size)["penultimate"]
