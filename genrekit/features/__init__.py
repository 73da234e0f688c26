"""Audio to model input: decoding, log-mel segments, the front ends and the feature cache."""
