"""Scoring a trained model: metrics per head, aggregation to tracks, reports, plots, baselines."""
