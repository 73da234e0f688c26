"""Where a labelled dataset comes from: FMA's metadata, a user's folders or manifest, the splits, the genre tree, the built-in demo."""
