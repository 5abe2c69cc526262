"""Fixed feature maps ``Φ`` for the convex η-DV fit (Mroueh et al., "Improved Mutual Information Estimation",
AAAI 2021, Sec. 3: a witness ``f(z) = <w, Φ(z)>`` in the RKHS of a finite-dimensional feature map).

Both maps take a pair batch ``(x [n, ...], y [n, ...])`` and return ``Φ(x_i, y_i)`` as ``[n, m]`` float64. For a
divergence ``KL(P || Q)`` between samples ``z`` of one space, ``y`` is left out (``None``).

- :class:`RandomFourierFeatures`: the Gaussian kernel ``k(z, z') = exp(-||z - z'||² / (2 σ²))`` on ``z = [x; y]``
  approximated by ``Φ(z) = sqrt(2/m) cos(ω z / σ + b)``, ``ω ~ N(0, I)``, ``b ~ U[0, 2π)`` (Rahimi & Recht,
  NeurIPS 2007); ``E[Φ(z)ᵀΦ(z')] = k(z, z')``. The bandwidth ``σ`` is given, or set by the median heuristic (the
  median distance between the points of the fit). The draws are nested: the first ``m`` features of a map with
  more features, same ``seed``, are this map's up to the ``sqrt(2/m)`` scale, so a larger ``m`` is a finer map of
  the same kernel.
- :class:`CriticFeatures`: the frozen last hidden layer of a trained critic (the paper's choice: the feature layer
  of a trained η-MINE critic), i.e. the input of its final ``Linear(width, 1)``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..critics import Critic, JointCritic

__all__ = ["FeatureMap", "RandomFourierFeatures", "CriticFeatures", "median_distance", "output_layer"]

#: rows of a feature matrix computed at once (bounds the memory of a forward pass).
_CHUNK = 16384
#: points the median heuristic looks at (a seeded subsample of the fit's points beyond that).
_MEDIAN_POINTS = 1000


def _rows(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def median_distance(z: Tensor, max_points: int = _MEDIAN_POINTS, seed: int = 0) -> float:
    """Median Euclidean distance between distinct points of ``z [n, d]`` (a seeded subsample of ``max_points``)."""
    z = _rows(z).double()
    if z.shape[0] > max_points:
        rows = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        z = z[rows.to(z.device)]
    if z.shape[0] < 2:
        raise ValueError(f"bandwidth: the median heuristic needs at least 2 points, got {z.shape[0]}")
    distances = torch.cdist(z, z)
    upper = distances[torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device).unbind(0)]
    return float(upper.median())


class FeatureMap(nn.Module):
    """``Φ``: a pair batch ``(x, y)`` (or one sample set ``x``, ``y=None``) to ``[n, out_dim]`` float64 features.

    Attributes:
        out_dim: the number of features ``m`` (the dimension of the witness weights ``w``).
    """

    out_dim: int

    @abstractmethod
    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``[n, out_dim]`` float64 features of the pairs ``(x_i, y_i)`` (of the samples ``x_i`` when ``y`` is None)."""

    def prepare(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        """Set the data-dependent settings (a median-heuristic bandwidth) from the fit's points; default: none."""

    def initial_weights(self) -> Optional[Tensor]:
        """A warm start for ``w`` (``[out_dim]``), or None (start at 0)."""
        return None

    def features(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """:meth:`forward` in chunks of rows, without gradients."""
        n = x.shape[0]
        if y is not None and y.shape[0] != n:
            raise ValueError(f"x and y: expected the same number of rows, got {tuple(x.shape)} and {tuple(y.shape)}")
        with torch.no_grad():
            parts = [
                self(x[i : i + _CHUNK], None if y is None else y[i : i + _CHUNK]) for i in range(0, max(n, 1), _CHUNK)
            ]
        return torch.cat(parts) if parts else torch.empty(0, self.out_dim, dtype=torch.float64)


class RandomFourierFeatures(FeatureMap):
    """Random Fourier features of the Gaussian kernel on ``z = [x; y]`` (flattened and concatenated).

    Args:
        in_dim: features of ``z`` per sample (``x_dim + y_dim`` for pairs, ``dim`` for one sample set).
        num_features: ``m``, the number of random features (the map's resolution).
        bandwidth: the kernel's ``σ``; ``None`` sets it by the median heuristic at each :meth:`prepare`.
        seed: seed of the random frequencies and phases (nested across ``num_features``, see the module docstring).
    """

    omega: Tensor
    phase: Tensor

    def __init__(self, in_dim: int, num_features: int = 512, bandwidth: Optional[float] = None, seed: int = 0) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("num_features", num_features)):
            if isinstance(value, bool) or not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth: expected a positive kernel width (None: median heuristic), got {bandwidth!r}")
        self.in_dim, self.out_dim, self.seed = in_dim, num_features, seed
        self.fixed_bandwidth = bandwidth
        self.bandwidth: Optional[float] = bandwidth
        rng = np.random.default_rng(seed)
        # Drawn feature by feature (a row of frequencies, then its phase): the first m of a larger map are these.
        draws = rng.standard_normal((num_features, in_dim + 1))
        self.register_buffer("omega", torch.from_numpy(draws[:, :in_dim].T.copy()))  # [in_dim, m]
        phases = 2 * math.pi * (torch.special.ndtr(torch.from_numpy(draws[:, in_dim])))  # U[0, 2π) from the draw
        self.register_buffer("phase", phases)

    def _z(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        z = _rows(x) if y is None else torch.cat([_rows(x), _rows(y).to(x.device)], dim=1)
        if z.shape[1] != self.in_dim:
            raise ValueError(
                f"in_dim: the feature map expects {self.in_dim} features per sample (x and y flattened and "
                f"concatenated), got {z.shape[1]}"
            )
        return z.to(self.omega.device, torch.float64)

    def prepare(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        if self.fixed_bandwidth is None:
            width = median_distance(self._z(x, y), seed=self.seed)
            if not width > 0:
                raise ValueError("bandwidth: the median heuristic gave 0 (most points coincide); pass bandwidth")
            self.bandwidth = width

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if self.bandwidth is None:
            raise RuntimeError("bandwidth: not set; pass bandwidth, or call prepare(x, y) (the fit does) first")
        z = self._z(x, y)
        return math.sqrt(2.0 / self.out_dim) * torch.cos(z @ self.omega / self.bandwidth + self.phase)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, num_features={self.out_dim}, bandwidth={self.bandwidth}, seed={self.seed}"


def output_layer(critic: Critic) -> nn.Linear:
    """The critic's final ``Linear(width, 1)``, whose input is its feature layer: ``rest[-1]`` of a
    :class:`~pdlightning.critics.JointCritic`, or the ``output_layer`` attribute a critic declares."""
    layer = critic.rest[-1] if isinstance(critic, JointCritic) else getattr(critic, "output_layer", None)
    if not (isinstance(layer, nn.Linear) and layer.out_features == 1):
        raise ValueError(
            f"critic: {type(critic).__name__} has no feature layer (a final Linear(width, 1) whose input is "
            "the critic's last hidden layer); use a JointCritic, or a critic with an `output_layer` attribute"
        )
    return layer


class CriticFeatures(FeatureMap):
    """The frozen feature layer of a trained critic: ``Φ(x, y)`` = the input of its final ``Linear(width, 1)``.

    The critic's own output is ``<w_0, Φ> + b``: :meth:`initial_weights` gives ``w_0`` (the convex fit starts from
    the trained critic; the bias is absorbed by ``η``). The critic is frozen (no gradients, eval mode).

    Args:
        critic: a trained critic with a feature layer (see :func:`output_layer`).
        width: the feature layer's expected width (checked when given).
    """

    def __init__(self, critic: Critic, width: Optional[int] = None) -> None:
        super().__init__()
        layer = output_layer(critic)
        if width is not None and layer.in_features != width:
            raise ValueError(
                f"width: expected the critic's feature layer to have {width} features, but "
                f"{type(critic).__name__}'s last hidden layer has {layer.in_features}"
            )
        self.critic = critic.requires_grad_(False).eval()
        self._layer = [layer]  # not a submodule: it is the critic's own
        self.out_dim = layer.in_features

    def train(self, mode: bool = True) -> "CriticFeatures":
        super().train(mode)
        self.critic.eval()  # frozen: dropout / BatchNorm stay in eval mode
        return self

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        device = self._layer[0].weight.device
        x = x.to(device)
        y = torch.zeros(x.shape[0], self.critic.y_dim, device=device) if y is None else y.to(device)
        # (y None: one sample set, with the constant placeholder column of pdlightning.data.divergence)
        captured: list[Tensor] = []
        handle = self._layer[0].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            self.critic.pointwise(x, y)
        finally:
            handle.remove()
        return captured[0].reshape(x.shape[0], -1).double()

    def initial_weights(self) -> Tensor:
        return self._layer[0].weight.detach()[0].double().clone()

    @classmethod
    def from_checkpoint(
        cls, path: str, critic: Optional[Critic] = None, width: Optional[int] = None, member: Optional[str] = None
    ) -> "CriticFeatures":
        """The feature layer of member ``member``'s critic (default: the fit's only member) in an
        :class:`~pdlightning.modules.MIEstimationModule` checkpoint. Without ``critic`` the architecture is rebuilt
        from the checkpoint's hyper-parameters (written by the ``pdlightning`` CLI); else pass an instance of it."""
        from ..modules.stacking import member_state_dict

        checkpoint = _read(path)
        names = [m["name"] for m in checkpoint.get("members") or []]
        where = (checkpoint.get("member_layout") or {}).get("critics") or {}
        if not names or not where:
            raise ValueError(f"path: {path!r} is not an MIEstimationModule checkpoint (no member table)")
        if member is None:
            if len(names) > 1:
                raise ValueError(f"member: {path!r} holds {len(names)} members {names}; name the one to read")
            member = names[0]
        if member not in where:
            raise ValueError(f"member: {path!r} has no member {member!r}; it holds {names}")
        stack, position = where[member]
        if critic is None:
            spec = checkpoint.get("hyper_parameters", {}).get("critic")
            if not (isinstance(spec, dict) and "class_path" in spec):
                raise ValueError(
                    f"critic: {path!r} does not record the critic's architecture (not written by the pdlightning "
                    "CLI, or the member has its own); pass `critic`, an instance of the trained architecture"
                )
            from ..runner.config import instantiate

            critic = instantiate(spec, Critic)
        try:
            critic.load_state_dict(member_state_dict(critic, checkpoint["state_dict"], f"critics.{stack}.", position))
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"critic: {path!r} does not match {type(critic).__name__}: {error}") from None
        return cls(critic, width=width)


def _read(path: str) -> dict[str, Any]:
    try:
        # Lightning checkpoints pickle hyper-parameters: only load trusted files.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"path: no such checkpoint {path!r}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"path: {path!r} is not a Lightning checkpoint (no 'state_dict')")
    return checkpoint
