"""A training run: data stream, augmentation, balancing, callbacks, resume and the run config."""
