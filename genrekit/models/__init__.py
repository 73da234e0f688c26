"""The models: the registry, the CNN, heads on embeddings, the musicnn port, losses and saving."""
