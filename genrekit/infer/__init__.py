"""Predicting genres for audio files with a trained run, and writing the results."""
