"""The feature cache: every track's log-mel segments in memory-mapped float16 files, built in parallel.

Layout of a cache folder (one folder per front end and parameter set, :func:`cache_folder`)::

    cache_dir/
        part-s0of1-000/          one part: a fixed list of tracks, built by one shard
            manifest.json        front end, its parameters and version, shape, shard, track-list sha1
            track_ids.npy        int64 (rows,), sorted: row r holds track track_ids[r]
            features.npy         float16 (rows, *frontend.row_shape), e.g. (rows, num_segments, n_mels, frames)
            checksums.npy        uint32 (rows,): crc32 of each ok row's bytes, as its worker wrote them
            status.npy           uint8 (rows,): 0 pending, 1 ok, 2 defective, 3 missing, 4 damaged
            failures.csv         track_id,path,status,reason of every defective, missing or damaged
                                 track, and of every truncated track whose decodable part is used
        decoder-s0of1.log        what libsndfile/mpg123 printed while decoding

Building (:func:`ensure_cache`) is resumable: a row's status is written only after its features
are on disk (``fdatasync``), so a build killed at any moment (Ctrl-C, ``kill -9``, power loss)
keeps every finished row and the next run does only the rest. Workers are separate processes
(one BLAS/OpenMP thread each) that write their rows' features themselves and report only a
status, so the parent stays idle; a worker that crashes or hangs on a file (more than
``timeout`` seconds) is killed and replaced, and the file is recorded as defective.

Damaged rows: every row read is checked against its checksum, once per process (later reads of a
checked row cost nothing: see :mod:`genrekit.features.cache.parts`). A row whose bytes changed on
disk (zeroed, a bit flipped, NaN written) is never returned: the reader names it (cache part, track,
what is wrong) and raises :class:`~genrekit.errors.CacheDamageError`; :func:`ensure_cache`, which
training and evaluation run first, checks the requested rows, marks damaged ones ``damaged`` and
recomputes them from their audio, or leaves them out (listed in failures.csv) while the audio is not
there. A part written before checksums gets them once, from its rows as they are, with a line
saying so (its all-zero or non-finite rows are treated as damaged).

Truncated files (a cut download: decoding stops well before the length the header declares)
follow :mod:`genrekit.features.mel`'s rule, the same in training, evaluation and inference: the part
that decodes is used when it holds ``min_segments`` whole segments (the row is ok, and
failures.csv lists it with status ``truncated``); a shorter part makes the track defective.

Tracks: a part is created for the tracks it was asked for. Asking later for tracks the cache does
not have (a larger subset, new files) **extends** the cache with a new part holding only those;
tracks already present are never recomputed. A missing file is remembered as missing while it
is absent and tried again by the first build that finds it in place; defective files are tried
again only with ``retry_defective=True``. A cache whose manifest disagrees with the
requested front end (:class:`~genrekit.features.frontends.FrontEnd`: another one, other parameters or an older
feature version) is refused with a :class:`~genrekit.errors.CacheError` naming the differences:
features are never mixed. The front end decides what a row holds; the cache only stores rows.

Several machines, one command: ``ensure_cache(..., engine="ray")`` (``--engine ray``) runs the
workers on a Ray cluster whose nodes see the cache folder and the audio at the same paths; the
cache is the one the local pool builds (:mod:`genrekit.ray_engine`). Without Ray, sharding:
``ensure_cache(..., shard=(i, n))`` (``--shard i/n``) takes the
tracks whose ``track_id % n == i`` and builds them into parts named ``part-s{i}of{n}-*``. Run
shard ``0/n`` ... ``n-1/n`` on n machines (each into a local cache folder of the same name, or
one shared folder), then put all ``part-*`` folders into one folder (``rsync -a``):
:meth:`FeatureCache.open` reads every part of a folder together. Two builds of the same shard on
one folder at once are refused (a lock file; local file systems only).
"""

from genrekit.features.cache.build import (
    COMMIT_SECONDS,
    DECODE_TIMEOUT,
    CacheSummary,
    ensure_cache,
    parse_shard,
)
from genrekit.features.cache.parts import (
    ABSENT,
    CACHE_FORMAT,
    DAMAGED,
    DEFECTIVE,
    DTYPE,
    MISSING,
    OK,
    PENDING,
    STATUS_NAMES,
    TRUNCATED,
    Damage,
    Failure,
    cache_folder,
    forget_checks,
)
from genrekit.features.cache.reader import FeatureCache

__all__ = [
    "ABSENT",
    "CACHE_FORMAT",
    "COMMIT_SECONDS",
    "DAMAGED",
    "DECODE_TIMEOUT",
    "DEFECTIVE",
    "DTYPE",
    "MISSING",
    "OK",
    "PENDING",
    "STATUS_NAMES",
    "TRUNCATED",
    "CacheSummary",
    "Damage",
    "FeatureCache",
    "Failure",
    "cache_folder",
    "ensure_cache",
    "forget_checks",
    "parse_shard",
]
