"""The built-in demo dataset: synthetic tracks written in FMA's exact layout."""
