"""Critic interface: ``T(x, y)`` for every pair of a batch (a score matrix) or for given pairs."""

from __future__ import annotations

from typing import ClassVar, Optional

from torch import Tensor, nn

__all__ = ["Critic", "flatten_features"]


def flatten_features(t: Tensor, expected_dim: int, name: str) -> Tensor:
    """``[n, ...] -> [n, d]``, checking ``d`` against the critic's configured input size."""
    if t.dim() < 2:
        raise ValueError(f"{name}: expected a batch of shape [n, ...], got {tuple(t.shape)}")
    flat = t.reshape(t.shape[0], -1)
    if flat.shape[1] != expected_dim:
        raise ValueError(
            f"{name}: the critic expects {expected_dim} features per sample ({name}_dim), "
            f"got {flat.shape[1]} (batch shape {tuple(t.shape)})"
        )
    return flat


class Critic(nn.Module):
    """Maps a batch ``(x [n, ...], y [n, ...])`` to ``scores[i, j] = T(x_i, y_j)`` (``[n, n]``).

    A subclass implements :meth:`cross` (all pairs of ``x [n]`` and ``y [m]``: ``[n, m]``) and
    :meth:`pointwise` (only the given pairs ``T(x_i, y_i)``, ``[n]``: the joint pairs, or explicit
    marginal pairs drawn by a task). ``forward`` is the in-batch score matrix: :meth:`cross` of a
    batch with itself.
    """

    #: members per call when a stack of this critic runs on a CPU and no ``chunk_size`` is given (``None``: all in one
    #: batched call, as on a GPU). A critic whose per-member activations outgrow the CPU's caches (the joint critic's
    #: ``n^2`` pairs) sets 1: a loop over members is then faster than one batched call.
    cpu_chunk_size: ClassVar[Optional[int]] = None

    def __init__(self, x_dim: int, y_dim: int) -> None:
        super().__init__()
        for name, value in (("x_dim", x_dim), ("y_dim", y_dim)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name}: expected a positive number of input features, got {value!r}")
        self.x_dim = x_dim
        self.y_dim = y_dim

    @staticmethod
    def check_paired(x: Tensor, y: Tensor) -> None:
        """``x`` and ``y`` hold the same number of samples (they are pairs)."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y: expected the same batch size, got x {tuple(x.shape)} and y {tuple(y.shape)}")

    def _inputs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Flatten and check both inputs; cast them to the critic's parameter dtype (integer one-hot
        or fp16 data into a float32 critic; autocast still chooses the compute precision)."""
        x, y = flatten_features(x, self.x_dim, "x"), flatten_features(y, self.y_dim, "y")
        parameter = next(self.parameters(), None)
        if parameter is not None and parameter.is_floating_point():
            x, y = x.to(parameter.dtype), y.to(parameter.dtype)
        return x, y

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``[n, n]`` scores of every pair of a batch of ``n`` pairs."""
        self.check_paired(x, y)
        return self.cross(x, y)

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        """``[n, m]`` scores ``T(x_i, y_j)`` for ``x [n, ...]`` and ``y [m, ...]`` (``n``, ``m`` may differ)."""
        raise NotImplementedError

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        """``[n]`` scores ``T(x_i, y_i)`` of the given pairs."""
        raise NotImplementedError

    def stacked(
        self, method: str, state: dict[str, Tensor], x: Tensor, y: Tensor, members_dim: bool
    ) -> Optional[Tensor]:
        """``method`` (``forward``, ``cross``, ``pointwise``) for ``K`` members of this architecture at once, with
        their weights ``state`` (``[K, *shape]`` under this critic's parameter names) and inputs shared (``[n, ...]``)
        or per member (``[K, n, ...]``, ``members_dim``): the explicit batched layer, one batched GEMM per layer. A
        critic that has one overrides this; ``None`` (the default) lets the caller map the plain method over the
        members with ``torch.vmap``."""
        return None

    def reset_parameters(self) -> "Critic":
        """Draw the parameters again from the global RNG, exactly as the constructor drew them
        (each submodule's own ``reset_parameters``, in construction order): with
        ``torch.manual_seed(s)`` before, a copy of a critic is initialised as a critic constructed
        under that seed. A critic whose constructor initialises otherwise overrides this."""

        def visit(module: nn.Module) -> None:
            for child in module.children():
                reset = getattr(child, "reset_parameters", None)
                if callable(reset):
                    reset()  # a layer, or a nested critic (which resets its own)
                else:
                    visit(child)  # a container

        visit(self)
        return self
