"""The FMA paper's classical baseline: per-clip MFCC statistics and scikit-learn classifiers.

Defferrard et al., "FMA: A Dataset for Music Analysis" (ISMIR 2017), classify top genres from
hand-made features; MFCC statistics with an RBF SVM is their strongest single feature set. This
module reproduces that recipe as their ``features.py`` computes it: 20 MFCCs from a log-mel
spectrogram (n_fft 2048, hop 512), summarised per clip by 7 statistics (mean, std, skew, kurtosis,
median, min, max) = 140 values, standardized, then ``SVC(kernel="rbf")`` or logistic regression.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.engine import Engine, get_engine
from genrekit.errors import AudioDecodeError, ConfigError
from genrekit.fileio import replacing
from genrekit.paths import native_path
from genrekit.workers import run_serial

if TYPE_CHECKING:
    from genrekit.workers import Outcome

log = logging.getLogger(__name__)

N_MFCC = 20
STATISTICS = ("mean", "std", "skew", "kurtosis", "median", "min", "max")
N_FEATURES = N_MFCC * len(STATISTICS)  # 140
CLASSIFIERS = ("svm", "svm_balanced", "logreg")
DECODE_TIMEOUT = 120.0  # seconds one clip may take before its worker is killed (a clip: ~0.1 s)


def feature_names() -> list[str]:
    """``mfcc_<statistic>_<coefficient>`` for the 140 columns, in :func:`mfcc_statistics` order."""
    return [f"mfcc_{stat}_{i:02d}" for stat in STATISTICS for i in range(N_MFCC)]


def _decode(path: Path, sample_rate: int, duration: float | None) -> np.ndarray:
    """Mono float32 audio of the first ``duration`` seconds at ``sample_rate``."""
    import soundfile as sf
    import soxr

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioDecodeError(f"{path}: file not found") from None
    except OSError as exc:
        raise AudioDecodeError(f"{path}: cannot stat ({exc.strerror or exc})") from None
    if size == 0:
        raise AudioDecodeError(f"{path}: empty file (0 bytes)")
    try:
        with sf.SoundFile(native_path(path)) as f:  # its bytes: a name may not be UTF-8
            rate = int(f.samplerate)
            frames = -1 if duration is None else int(round(duration * rate))
            x = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioDecodeError(f"{path}: cannot decode ({exc})") from exc
    if x.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio frames decoded")
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono)


def mfcc_statistics(
    path: str | os.PathLike,
    *,
    sample_rate: int = 22050,
    duration: float | None = 30.0,
    n_fft: int = 2048,
    hop_length: int = 512,
) -> np.ndarray:
    """The 140 MFCC statistics of one audio file (FMA paper, ``features.py``).

    Parameters
    ----------
    path : path-like
        An audio file libsndfile reads (FMA's MP3s).
    sample_rate : int
        Audio is resampled to this rate first.
    duration : float or None
        Only the first ``duration`` seconds are used (None: the whole file).
    n_fft, hop_length : int
        STFT window and hop in samples.

    Returns
    -------
    ndarray, shape (140,), float64
        ``STATISTICS`` (outer) x 20 coefficients (inner); see :func:`feature_names`.

    Raises
    ------
    AudioDecodeError
        The file is missing, empty, undecodable, or shorter than one STFT window.
    """
    import librosa
    from scipy import stats

    path = Path(path)
    x = _decode(path, sample_rate, duration)
    if len(x) < n_fft:
        raise AudioDecodeError(
            f"{path}: too short for MFCCs ({len(x)} samples at {sample_rate} Hz, at least {n_fft} needed)"
        )
    power = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop_length)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sample_rate)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC).astype(np.float64)
    if not np.isfinite(mfcc).all():
        raise AudioDecodeError(f"{path}: MFCCs are not finite (silent or broken audio)")
    values = [
        mfcc.mean(axis=1),
        mfcc.std(axis=1),
        stats.skew(mfcc, axis=1),
        stats.kurtosis(mfcc, axis=1),
        np.median(mfcc, axis=1),
        mfcc.min(axis=1),
        mfcc.max(axis=1),
    ]
    out = np.concatenate(values)
    # A constant coefficient (digital silence) has undefined skew and kurtosis: call it 0, as
    # the statistics of a flat signal, rather than fail the clip.
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _result(outcome: Outcome) -> tuple[int, np.ndarray | None, str | None]:
    """A worker's ``_one`` answer, or the failure of a worker that died or hung on the clip."""
    if outcome.ok:
        return outcome.value
    track_id, path = outcome.item[:2]
    return track_id, None, f"{path}: {outcome.reason}"


def _one(args: tuple[int, str, int, float | None]) -> tuple[int, np.ndarray | None, str | None]:
    track_id, path, sample_rate, duration = args
    try:
        return track_id, mfcc_statistics(path, sample_rate=sample_rate, duration=duration), None
    except AudioDecodeError as exc:
        return track_id, None, str(exc)
    except Exception as exc:  # one bad clip must not end the whole extraction
        return track_id, None, f"{path}: {type(exc).__name__}: {exc}"


@dataclass
class ClipFeatures:
    """One feature row per track (MFCC statistics, pooled musicnn features), with the tracks that
    failed and why."""

    track_ids: np.ndarray  # (n,) int64, sorted
    features: np.ndarray  # (n, dim) float64: 140 MFCC statistics, 753 musicnn max_pool values
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    def rows(self, track_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(features, found)`` for the given ids: ``found`` marks the ids that have features."""
        ids = np.asarray(list(track_ids), dtype=np.int64)
        pos = np.searchsorted(self.track_ids, ids)
        pos = np.minimum(pos, max(len(self.track_ids) - 1, 0))
        found = (self.track_ids[pos] == ids) if len(self.track_ids) else np.zeros(len(ids), bool)
        return self.features[pos[found]], found

    def save(self, path: str | os.PathLike) -> None:
        """Write to an ``.npz`` through a temp file, so an interrupted save leaves no half file."""

        with replacing(path) as tmp:  # keeps the .npz suffix, so np.savez adds none
            np.savez(
                tmp,
                track_ids=self.track_ids,
                features=self.features,
                failed_ids=np.array(list(self.failures), dtype=np.int64),
                failed_reasons=np.array(list(self.failures.values()), dtype=str),
                seconds=self.seconds,
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClipFeatures:
        with np.load(path) as z:
            failures = dict(zip(z["failed_ids"].tolist(), z["failed_reasons"].tolist(), strict=True))
            return cls(z["track_ids"], z["features"], failures, float(z["seconds"]))


MfccFeatures = ClipFeatures  # the name of rows 8a-b and of scripts written before the transfer baseline


def extract_mfcc_features(
    items: Sequence[tuple[int, str | os.PathLike]],
    *,
    sample_rate: int = 22050,
    duration: float | None = 30.0,
    workers: int = 0,
    progress: bool = False,
    timeout: float = DECODE_TIMEOUT,
    engine: str | Engine | None = None,
) -> ClipFeatures:
    """MFCC statistics of ``(track_id, path)`` items, in a process pool.

    A clip that cannot be decoded is recorded in ``failures`` (id -> reason) and left out, never
    filled with zeros; so is one whose worker crashes or takes more than ``timeout`` seconds.
    ``workers``: 0 = all CPU cores (of the engine's machines), 1 = in this process (local engine).
    ``engine``: where the workers run (:mod:`genrekit.engine`; default the local pool).
    """

    started = time.time()
    jobs = [(int(t), str(p), int(sample_rate), duration) for t, p in items]
    engine = get_engine(engine)
    workers = engine.workers(workers)
    if engine.in_process(workers, len(jobs)):
        outcomes: Iterator[Outcome] = run_serial(_one, jobs)
    else:
        outcomes = engine.map(
            _one,
            jobs,
            workers=workers,
            timeout=timeout,
            ordered=True,
            in_flight=4,
            crashed_reason="the decoder crashed on this file (worker exit code {exitcode})",
        )
    results: Iterable = (_result(o) for o in outcomes)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc="MFCC statistics", unit="clip")
    ids, rows, failures = [], [], {}
    try:
        for tid, vec, error in results:
            if vec is None:
                failures[tid] = error or "unknown error"
            else:
                ids.append(tid)
                rows.append(vec)
    finally:
        outcomes.close()  # stops the workers at once on Ctrl-C or an error
    for tid, reason in failures.items():
        log.warning("MFCC statistics: track %d left out: %s", tid, reason)
    order = np.argsort(ids)
    feats = np.asarray(rows, dtype=np.float64).reshape(-1, N_FEATURES)[order]
    return ClipFeatures(np.asarray(ids, np.int64)[order], feats, failures, time.time() - started)


def make_classifier(kind: str, *, seed: int = 0) -> Any:
    """A scikit-learn pipeline: standardization, then the paper's classifier.

    ``svm``: ``SVC(kernel="rbf")`` with scikit-learn's defaults (C=1, gamma="scale");
    ``svm_balanced``: the same with ``class_weight="balanced"``; ``logreg``: multinomial
    logistic regression.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "svm":
        clf = SVC(kernel="rbf", random_state=seed)
    elif kind == "svm_balanced":
        clf = SVC(kernel="rbf", class_weight="balanced", random_state=seed)
    elif kind == "logreg":
        clf = LogisticRegression(max_iter=2000, random_state=seed)
    else:
        raise ConfigError(f"classifier {kind!r} is not one of {', '.join(CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), clf)


def fit_predict(
    kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Fit a :func:`make_classifier` pipeline and predict ``x_test``; returns ``(pred, fit seconds)``."""
    if len(x_train) == 0:
        raise ConfigError("no training rows for the MFCC baseline")
    model = make_classifier(kind, seed=seed)
    started = time.time()
    model.fit(x_train, y_train)
    seconds = time.time() - started
    return np.asarray(model.predict(x_test), dtype=np.int64), seconds
