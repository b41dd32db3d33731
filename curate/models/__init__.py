"""Classifier heads on embeddings: architectures, training loops, and model directories."""
