"""genrekit: hierarchical, class-balanced music-genre classification on the FMA dataset.

The top-level scripts of the repository are thin command-line front-ends over this package.
Importing it does no work: no TensorFlow import, no environment change, no files read, no folders
created. Keras and TensorFlow are imported through :mod:`genrekit.backend`.
"""

__version__ = "0.1.0"
