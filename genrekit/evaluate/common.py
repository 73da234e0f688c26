"""What the evaluation modules share: a head's vocabulary, plain JSON values, quiet scikit-learn.

:class:`LevelVocab` names the classes of one head in output order; :func:`to_jsonable` and
:func:`number` turn numpy figures into the plain values of the report JSON (NaN -> None).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrekit.errors import ParameterError, ParameterTypeError

__all__ = ["LevelVocab", "number", "quiet_sklearn", "to_jsonable"]


@dataclass(frozen=True)
class LevelVocab:
    """The classes of one head, in output order.

    Attributes
    ----------
    names : tuple of str
        Genre titles.
    genre_ids : tuple of int
        FMA genre ids.
    root_ids : tuple of int or None
        The top-level genre id above each class (a top genre is its own root); needed for the
        hierarchy check of the medium head.
    """

    names: tuple[str, ...]
    genre_ids: tuple[int, ...]
    root_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "genre_ids", tuple(int(g) for g in self.genre_ids))
        if self.root_ids is not None:
            object.__setattr__(self, "root_ids", tuple(int(r) for r in self.root_ids))
        for field in ("genre_ids", "root_ids"):
            value = getattr(self, field)
            if value is not None and len(value) != len(self.names):
                raise ParameterError(f"{len(value)} {field} given for {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def coerce(cls, vocab: Any) -> LevelVocab:
        """Accept a LevelVocab, a mapping or an object with ``names``/``genre_ids``/``root_ids``.

        A plain sequence of names is accepted too; its genre ids are then the class indices.
        """
        if isinstance(vocab, LevelVocab):
            return vocab
        if isinstance(vocab, Mapping):
            get = vocab.get
        elif hasattr(vocab, "names"):
            get = lambda key, default=None: getattr(vocab, key, default)  # noqa: E731
        elif isinstance(vocab, Sequence) and not isinstance(vocab, str):
            return cls(names=tuple(vocab), genre_ids=tuple(range(len(vocab))))
        else:
            raise ParameterTypeError(f"cannot read a vocabulary from {type(vocab).__name__}")
        names = list(get("names"))
        genre_ids = get("genre_ids")
        root_ids = get("root_ids")
        return cls(
            names=tuple(names),
            genre_ids=tuple(range(len(names))) if genre_ids is None else tuple(genre_ids),
            root_ids=None if root_ids is None else tuple(root_ids),
        )


# --- JSON --------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars and arrays, tuples and NaN/inf to plain JSON values (NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def number(x: Any) -> float | None:
    """A metric as a plain float, None when undefined."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@contextlib.contextmanager
def quiet_sklearn() -> Iterator[None]:
    """Silence sklearn's warnings about classes absent from a small or masked set."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*'k'.*greater than or equal to 'n_classes'.*")
        yield
