"""Pretrained music backbones: their Keras 3 ports, their front ends, and how their weights are fetched."""
