"""Training-time augmentation of segment batches: SpecAugment masks and mixup.

The random choices (mask positions and widths, mixup partners and weights) are drawn with numpy
from ``(seed, epoch, batch)`` by :class:`AugmentPlan`, so a resumed run augments its epochs
exactly as an uninterrupted one; applying them (:func:`apply_augmentation`) uses ``keras.ops``
only, so the same code runs inside the tf.data pipeline and on any Keras backend.

- **SpecAugment** (Park et al., 2019; PANNs' recipe: 2 time masks, 2 frequency masks): each
  mask replaces a band of frames or of mel bands by the training-set mean of each band, which
  the model's normalization layer turns into 0, the value PANNs masks with after its BatchNorm.
- **mixup** (Zhang et al., 2018): segment i is mixed with a partner from the same batch,
  ``x = lam * x_i + (1 - lam) * x_j`` with ``lam ~ Beta(alpha, alpha)``. Targets are mixed so that
  the loss equals ``lam * loss_i + (1 - lam) * loss_j`` with each row's own sample weight: for
  the softmax heads ``w = lam * w_i + (1 - lam) * w_j`` and
  ``y = (lam * w_i * y_i + (1 - lam) * w_j * y_j) / w``, so a masked partner (weight 0) adds
  nothing and a pair of masked rows stays masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from genrekit.settings import Settings

SOFTMAX_HEADS = ("top", "medium")
PARAM_KEYS = ("time_start", "time_width", "freq_start", "freq_width", "partner", "lam")


@dataclass(frozen=True)
class AugmentPlan:
    """What to augment and how much; draws each batch's random parameters.

    Parameters
    ----------
    time_masks, freq_masks : int
        Masks per segment along time (frames) and frequency (mel bands); 0 turns that part off.
    time_mask_frames, freq_mask_bands : int
        Largest mask width; each mask's width is uniform in ``0..max``.
    mixup_alpha : float
        Beta distribution parameter of mixup; 0 turns mixup off.
    """

    time_masks: int = 0
    time_mask_frames: int = 0
    freq_masks: int = 0
    freq_mask_bands: int = 0
    mixup_alpha: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AugmentPlan | None:
        """The plan of a run's settings, or None when every augmentation is off."""
        plan = cls(
            time_masks=settings.time_masks if settings.spec_augment else 0,
            time_mask_frames=settings.time_mask_frames,
            freq_masks=settings.freq_masks if settings.spec_augment else 0,
            freq_mask_bands=settings.freq_mask_bands,
            mixup_alpha=settings.mixup_alpha,
        )
        return plan if plan.active else None

    @property
    def active(self) -> bool:
        return bool(
            (self.time_masks and self.time_mask_frames)
            or (self.freq_masks and self.freq_mask_bands)
            or self.mixup_alpha > 0
        )

    def draw(self, rng: np.random.Generator, n: int, n_mels: int, frames: int) -> dict[str, np.ndarray]:
        """Random parameters of one batch of ``n`` segments (plain numpy arrays)."""

        def masks(count: int, widest: int, size: int) -> tuple[np.ndarray, np.ndarray]:
            widest = min(widest, size)
            width = rng.integers(0, widest + 1, size=(n, count)) if count else np.zeros((n, 0), np.int64)
            start = np.floor(rng.random((n, count)) * (size - width + 1)).astype(np.int64)
            return start.astype(np.int32), width.astype(np.int32)

        t0, tw = masks(self.time_masks if self.time_mask_frames else 0, self.time_mask_frames, frames)
        f0, fw = masks(self.freq_masks if self.freq_mask_bands else 0, self.freq_mask_bands, n_mels)
        if self.mixup_alpha > 0:
            partner = rng.permutation(n).astype(np.int32)
            lam = rng.beta(self.mixup_alpha, self.mixup_alpha, size=n).astype(np.float32)
        else:
            partner = np.arange(n, dtype=np.int32)
            lam = np.ones(n, dtype=np.float32)
        return {"time_start": t0, "time_width": tw, "freq_start": f0, "freq_width": fw,
                "partner": partner, "lam": lam}  # fmt: skip


def _band_mask(start: Any, width: Any, size: int) -> Any:
    """Boolean (n, size): True inside any of the (n, k) bands ``[start, start + width)``."""
    from genrekit.backend import keras

    ops = keras.ops
    pos = ops.reshape(ops.arange(size, dtype="int32"), (1, 1, size))
    start = ops.expand_dims(ops.cast(start, "int32"), -1)
    end = start + ops.expand_dims(ops.cast(width, "int32"), -1)
    inside = ops.logical_and(ops.greater_equal(pos, start), ops.less(pos, end))
    return ops.any(inside, axis=1)


def spec_augment(x: Any, params: Mapping[str, Any], fill: Any) -> Any:
    """Mask bands of frames and of mel bands of ``x`` (n, n_mels, frames) with ``fill`` (n_mels,)."""
    from genrekit.backend import keras

    ops = keras.ops
    n_mels, frames = x.shape[1], x.shape[2]
    mask = ops.zeros_like(x, dtype="bool")
    if params["time_start"].shape[-1]:
        mask = ops.logical_or(
            mask, ops.expand_dims(_band_mask(params["time_start"], params["time_width"], frames), 1)
        )
    if params["freq_start"].shape[-1]:
        mask = ops.logical_or(
            mask, ops.expand_dims(_band_mask(params["freq_start"], params["freq_width"], n_mels), 2)
        )
    fill = ops.reshape(ops.cast(fill, x.dtype), (1, n_mels, 1))
    return ops.where(mask, fill, x)


def mixup(
    x: Any, y: Mapping[str, Any], w: Mapping[str, Any], partner: Any, lam: Any
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Mix each row with ``partner`` (see the module docstring for targets and weights)."""
    from genrekit.backend import keras

    ops = keras.ops
    lam = ops.cast(lam, "float32")
    lam_x = ops.reshape(lam, (-1,) + (1,) * (len(x.shape) - 1))  # segments or embeddings
    xf = ops.cast(x, "float32")
    x_mixed = ops.cast(lam_x * xf + (1.0 - lam_x) * ops.take(xf, partner, axis=0), x.dtype)
    y_out, w_out = {}, {}
    lam_y = ops.expand_dims(lam, -1)
    for key in y:
        y_i, w_i = ops.cast(y[key], "float32"), ops.cast(w[key], "float32")
        y_j, w_j = ops.take(y_i, partner, axis=0), ops.take(w_i, partner, axis=0)
        if key in SOFTMAX_HEADS:
            weight = lam * w_i + (1.0 - lam) * w_j
            num = lam_y * ops.expand_dims(w_i, -1) * y_i + (1.0 - lam_y) * ops.expand_dims(w_j, -1) * y_j
            y_out[key] = ops.divide_no_nan(num, ops.expand_dims(weight, -1))
            w_out[key] = weight
        else:  # multi-label head: soft targets, the rows' weights mixed alike
            y_out[key] = lam_y * y_i + (1.0 - lam_y) * y_j
            w_out[key] = lam * w_i + (1.0 - lam) * w_j
    return x_mixed, y_out, w_out


def apply_augmentation(
    x: Any,
    y: Mapping[str, Any],
    w: Mapping[str, Any],
    params: Mapping[str, Any],
    fill: Any,
    plan: AugmentPlan,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """SpecAugment then mixup on one batch, as the plan says; ``keras.ops`` only."""
    if plan.time_masks or plan.freq_masks:
        x = spec_augment(x, params, fill)
    if plan.mixup_alpha > 0:
        return mixup(x, y, w, params["partner"], params["lam"])
    return x, dict(y), dict(w)
