"""Bad arguments to the metric and aggregation functions raise the toolkit's exception family."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit.errors import GenrekitError, ParameterError, ParameterTypeError
from genrekit.evaluate.aggregate import top_k_indices, track_mean
from genrekit.evaluate.metrics import LevelVocab, calibration


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: top_k_indices(np.ones((2, 3)), 0), "k=0 must be a positive integer"),
        (lambda: track_mean(np.ones(3), np.zeros(3, int)), "must be a 2-D"),
        (lambda: track_mean(np.ones((2, 3)), np.array([0, -1])), "negative track index"),
        (lambda: calibration(np.ones(2), np.ones(2, bool), n_bins=0), "n_bins=0 must be a positive integer"),
        (lambda: calibration(np.full(2, 1.5), np.ones(2, bool)), r"must lie in \[0, 1\]"),
    ],
)
def test_bad_values_are_parameter_errors_and_still_value_errors(call, words):
    with pytest.raises(ParameterError, match=words) as info:
        call()
    assert isinstance(info.value, GenrekitError) and isinstance(info.value, ValueError)


def test_a_vocabulary_of_an_unreadable_type_is_a_parameter_type_error():
    with pytest.raises(ParameterTypeError, match="cannot read a vocabulary from int") as info:
        LevelVocab.coerce(3)
    assert isinstance(info.value, GenrekitError) and isinstance(info.value, TypeError)
