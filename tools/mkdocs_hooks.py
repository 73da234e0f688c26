"""MkDocs hooks of the manual (``hooks:`` in mkdocs.yml): generated pages are filled in at build time.

The configuration reference (docs/configuration.md) gets its table from the source of
``genrekit.settings.Settings`` (:mod:`genrekit.settings_doc`), parsed, not imported, so the docs
build needs only MkDocs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's genrekit

from genrekit.settings_doc import fill_reference  # noqa: E402


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    """Fill the settings table into the page that holds its marker."""
    return fill_reference(markdown)
