"""Cross-process helpers: gather embeddings with gradients so the score matrix spans the global batch."""

from .gather import all_gather_with_grad, release_process_group, world_size

__all__ = ["all_gather_with_grad", "release_process_group", "world_size"]
