"""Hyper-parameter search: a checked search space (space), one trial's training in its own process
(trial), and the resumable Optuna study that writes the best settings as a config (study)."""
