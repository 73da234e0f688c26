"""Genre predictions for one audio file or a whole music folder (``genrekit predict``).

The command lives in genrekit/commands/predict.py; this script keeps ``python balanced_inference.py ...``
working, and ``from balanced_inference import MusicGenreInference`` for notebooks.
"""

from genrekit.commands.predict import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.predict import main


def __getattr__(name: str):
    # The notebook API, imported when first asked for, so that --help stays free of TensorFlow.
    if name == "MusicGenreInference":
        from genrekit.infer.predict import MusicGenreInference

        return MusicGenreInference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
