"""Reading a feature cache: :class:`FeatureCache` reads every part of a folder together.

Every row read is checked against its checksum the first time this process reads it
(:meth:`Part.verify <genrekit.features.cache.parts.Part.verify>`); a damaged row is never
returned: :meth:`FeatureCache.read` names it and raises, :meth:`FeatureCache.verify` lists it, and
either way the track is no longer ``ok`` for this cache (:attr:`FeatureCache.track_ids`,
:meth:`~FeatureCache.available` and :attr:`~FeatureCache.failures` say so).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from genrekit.errors import CacheDamageError, CacheError
from genrekit.features.cache.parts import (
    ABSENT,
    DAMAGED,
    DTYPE,
    INTACT,
    OK,
    STATUS_NAMES,
    TRUNCATED,
    Damage,
    Failure,
    Part,
    part_dirs,
)
from genrekit.features.frontends import FrontEnd, as_frontend
from genrekit.features.normalize import NormStats
from genrekit.features.params import FeatureParams

log = logging.getLogger(__name__)


class FeatureCache:
    """Read access to a built (or partly built) cache folder: every part, checked against ``frontend``.

    Use :meth:`open`; then :meth:`read` features, :meth:`status` of tracks, :attr:`failures`.
    """

    def __init__(self, cache_dir: Path, frontend: FrontEnd | FeatureParams, parts: list[Part]) -> None:
        self.cache_dir = cache_dir
        self.frontend = as_frontend(frontend)
        self.parts = parts
        # Track id -> (part, row); an ok row wins over another part's non-ok row of the same track.
        ids = [p.track_ids for p in parts]
        part_of = [np.full(len(p.track_ids), k, np.int32) for k, p in enumerate(parts)]
        rows = [np.arange(len(p.track_ids), dtype=np.int64) for p in parts]
        codes = [p.codes for p in parts]
        if parts:
            all_ids, all_parts = np.concatenate(ids), np.concatenate(part_of)
            all_rows, all_codes = np.concatenate(rows), np.concatenate(codes)
        else:
            all_ids = all_parts = all_rows = all_codes = np.zeros(0, np.int64)
        order = np.lexsort((all_codes != OK, all_ids))
        all_ids, all_parts, all_rows, all_codes = (
            a[order] for a in (all_ids, all_parts, all_rows, all_codes)
        )
        first = np.ones(len(all_ids), bool)
        first[1:] = all_ids[1:] != all_ids[:-1]
        self._ids = all_ids[first].astype(np.int64)
        self._part = all_parts[first].astype(np.int32)
        self._row = all_rows[first].astype(np.int64)
        self._code = all_codes[first].astype(np.uint8)

    @classmethod
    def open(cls, cache_dir: str | os.PathLike, frontend: FrontEnd | FeatureParams) -> FeatureCache:
        """Open every part of ``cache_dir``, checked against ``frontend`` (or plain FeatureParams).

        Raises
        ------
        CacheError
            When the folder holds no cache, or a part was built with other parameters.
        """
        cache_dir = Path(cache_dir)
        dirs = part_dirs(cache_dir)
        if not dirs:
            raise CacheError(
                f"no feature cache at {cache_dir}; build it first (python balanced_trainer.py --extract_only)"
            )
        frontend = as_frontend(frontend)
        parts = [Part(d, frontend) for d in dirs]
        old = [p.path.name for p in parts if p.checksums is None]
        if old:
            raise CacheError(
                f"feature cache {cache_dir}: parts {', '.join(old)} have no row checksums (written by an "
                "older genrekit); build the cache once (python balanced_trainer.py --extract_only, or "
                "any training or evaluation on it) to add them"
            )
        return cls(cache_dir, frontend, parts)

    @property
    def track_ids(self) -> np.ndarray:
        """Sorted ids of every track whose features are ready."""
        return self._ids[self._code == OK]

    def __len__(self) -> int:
        return int((self._code == OK).sum())

    def __contains__(self, track_id: object) -> bool:
        i = np.searchsorted(self._ids, track_id)
        return bool(i < len(self._ids) and self._ids[i] == track_id and self._code[i] == OK)

    def _lookup(self, track_ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        idx = np.searchsorted(self._ids, ids)
        idx_c = np.minimum(idx, max(len(self._ids) - 1, 0))
        if not len(self._ids):
            return idx_c, np.zeros(len(ids), bool)
        found = (idx < len(self._ids)) & (self._ids[idx_c] == ids)
        return idx_c, found

    def status(self, track_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Each track's status: ``ok``, ``defective``, ``missing``, ``pending`` or ``absent`` (in no part)."""
        idx, found = self._lookup(track_ids)
        absent = len(STATUS_NAMES)
        names = np.array([STATUS_NAMES[c] for c in range(absent)] + [ABSENT], dtype=object)
        codes = np.where(found, self._code[idx] if len(self._ids) else absent, absent)
        return names[codes]

    def available(self, track_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The ids among ``track_ids`` whose features are ready, in the given order."""
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        idx, found = self._lookup(ids)
        ok = found & (self._code[idx] == OK) if len(self._ids) else found
        return ids[ok]

    def _listed(self) -> list[tuple[int, Failure]]:
        """Every part's failures.csv rows, by track id (a later part's row wins), and the damaged
        rows this process found that no failures.csv lists yet."""
        merged: dict[int, Failure] = {}
        for part in self.parts:
            merged.update(part.failures())
        for part in self.parts:
            for row, reason in part.checks.reasons.items():
                if part.status[row] == OK:
                    tid = int(part.track_ids[row])
                    merged[tid] = Failure(tid, "", STATUS_NAMES[DAMAGED], reason)
        return sorted(merged.items())

    @property
    def failures(self) -> list[Failure]:
        """Defective, missing and damaged tracks of every part, with their reasons (from the parts'
        failures.csv, and the damaged rows found by this process)."""
        return [f for tid, f in self._listed() if tid not in self]

    @property
    def truncated(self) -> list[Failure]:
        """Tracks whose features come from the decodable part of a cut file (status ``truncated``)."""
        return [f for tid, f in self._listed() if tid in self and f.status == TRUNCATED]

    def read(self, track_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features of ``track_ids`` in their order, float16 ``(n, *frontend.row_shape)``.

        Rows are read sorted by position (consecutive rows in one read), which keeps reads large
        when the cache does not fit in the page cache; ask for blocks of tracks, not one at a time.
        Each row is checked against its checksum the first time this process reads it.

        Raises
        ------
        CacheDamageError
            When rows are damaged: each is logged (cache part, track, what is wrong), named in the
            message, and from then on not ``ok`` (filter with :meth:`available` and read again).
        CacheError
            When a track has no features (not ok), naming it and its status.
        """
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        idx = self._ok_index(ids)
        out, damaged = self._read_checked(idx)
        self._set_aside(damaged)
        self._refuse(damaged)
        return out

    def check(self, track_ids: Sequence[int] | np.ndarray) -> None:
        """:meth:`verify` the ok rows of ``track_ids`` and raise as :meth:`read` does if any is damaged."""
        self._refuse(self.verify(track_ids))

    def _refuse(self, damaged: list[Damage]) -> None:
        """Log each damaged row (cache part, track, what is wrong) and raise CacheDamageError."""
        if not damaged:
            return
        for d in damaged:
            log.warning("%s; not used", d.line())
        which = ", ".join(f"{d.track_id} ({d.reason})" for d in damaged[:5])
        raise CacheDamageError(
            f"{len(damaged)} rows of the feature cache {self.cache_dir} are damaged and were not used: "
            f"{which}{' ...' if len(damaged) > 5 else ''}; building the cache (ensure_cache, "
            "balanced_trainer.py --extract_only) recomputes them from the audio",
            damaged,
        )

    def verify(self, track_ids: Sequence[int] | np.ndarray) -> list[Damage]:
        """Check the ok rows of ``track_ids`` this process has not checked yet; return the damaged ones.

        Rows are checked where they lie in the page cache, without a copy. Damaged tracks are no
        longer ``ok`` for this cache; nothing is logged (the caller says what it does with them).
        Rows already checked cost nothing, so this is cheap to call again.
        """
        ids = np.unique(self.available(track_ids))
        idx, _ = self._lookup(ids)
        unchecked = np.zeros(len(idx), bool)
        for k, part in enumerate(self.parts):
            mine = self._part[idx] == k
            unchecked[mine] = part.checks.state[self._row[idx[mine]]] != INTACT
        todo = idx[unchecked]
        damaged: list[Damage] = []
        for k in np.unique(self._part[todo]):
            part = self.parts[k]
            rows = np.sort(self._row[todo[self._part[todo] == k]])  # in file order: sequential reads
            for row, reason in part.verify(rows).items():
                damaged.append(Damage(int(part.track_ids[row]), part, row, reason))
        self._set_aside(damaged)
        return damaged

    def damage(self) -> list[Damage]:
        """The damaged rows this process found in the cache's parts and did not yet mark on disk."""
        return [
            Damage(int(part.track_ids[row]), part, row, reason)
            for part in self.parts
            for row, reason in sorted(part.checks.reasons.items())
            if part.status[row] == OK
        ]

    def _ok_index(self, ids: np.ndarray) -> np.ndarray:
        """Index of each track in the lookup arrays; CacheError naming tracks that are not ok."""
        idx, found = self._lookup(ids)
        bad = ~found | (self._code[idx] != OK) if len(self._ids) else ~found
        if bad.any():
            status = self.status(ids[bad][:5])
            which = ", ".join(f"{t} ({s})" for t, s in zip(ids[bad][:5].tolist(), status, strict=True))
            raise CacheError(
                f"{int(bad.sum())} requested tracks have no features in {self.cache_dir}: {which}"
                f"{' ...' if bad.sum() > 5 else ''}; filter with FeatureCache.available() or extend the cache"
            )
        return idx

    def _read_checked(self, idx: np.ndarray) -> tuple[np.ndarray, list[Damage]]:
        """The rows at lookup index ``idx``, in that order, and those found damaged."""
        out = np.empty((len(idx), *self.parts[0].row_shape) if self.parts else (0,), DTYPE)
        parts, rows = self._part[idx], self._row[idx]
        order = np.lexsort((rows, parts))
        sorted_out = np.empty_like(out)
        damaged: list[Damage] = []
        start = 0
        for k in np.unique(parts):
            n = int((parts == k).sum())
            part, part_rows = self.parts[k], rows[order[start : start + n]]
            data = sorted_out[start : start + n]
            part.read_rows(part_rows, data)
            for row, reason in part.verify(part_rows, data).items():
                damaged.append(Damage(int(part.track_ids[row]), part, row, reason))
            start += n
        out[order] = sorted_out
        return out, list({(d.part.path, d.row): d for d in damaged}.values())  # a row asked twice: once

    def _set_aside(self, damaged: list[Damage]) -> None:
        """Damaged tracks are not ``ok`` any more for this cache."""
        if damaged:
            idx, _ = self._lookup([d.track_id for d in damaged])
            self._code[idx] = DAMAGED

    def iter_chunks(
        self, track_ids: Sequence[int] | np.ndarray, chunk_rows: int = 128
    ) -> Iterator[np.ndarray]:
        """:meth:`read` over ``track_ids`` in chunks of ``chunk_rows`` tracks."""
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        for i in range(0, len(ids), chunk_rows):
            yield self.read(ids[i : i + chunk_rows])

    def norm_stats(self, track_ids: Sequence[int] | np.ndarray, chunk_rows: int = 128) -> NormStats:
        """The front end's normalization statistics over these tracks (the training split), streamed
        in chunks: per-mel-band mean and std for log-mel segments."""
        return self.frontend.norm_stats(
            self.iter_chunks(np.sort(np.asarray(track_ids, np.int64)), chunk_rows)
        )

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
