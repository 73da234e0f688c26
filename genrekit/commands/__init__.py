"""The command-line layer: one module per command, each with ``build_parser()`` and ``main(argv)``.

``genrekit NAME`` (:mod:`genrekit.console`) and the repository's scripts (``python
balanced_trainer.py``, thin shims) run the same modules. A command reads the ``config.py`` of the
folder it runs in (:func:`genrekit.cli.working_config`). Importing a command imports no TensorFlow:
``--help`` answers at once. The library never imports this package.
"""

#: Subcommand -> (module under genrekit.commands, the repository script that runs it too).
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("setup", "setup_fma_dataset.py"),
    "inspect": ("inspect", "fma_inspector.py"),
    "train": ("train", "balanced_trainer.py"),
    "predict": ("predict", "balanced_inference.py"),
    "evaluate": ("evaluate", "model_evaluation.py"),
    "baseline": ("baseline", "baseline.py"),
    "tune": ("tune", "tune.py"),
    "quickstart": ("quickstart", "quick_start.py"),
    "fetch-backbone": ("fetch_backbone", "fetch_backbone.py"),
}
