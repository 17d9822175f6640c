"""The spatial transformer module: localisation net → grid generator → sampler.

Precision (mixed precision / ``torch.autocast``): the localisation net may run in low
precision — under autocast its convolutions and linear layers, θ included, come out in
float16/bfloat16 — but grid generation (the TPS solve included) and sampling run in U's
precision: θ is cast to U's dtype (upcast to float32 for a float32 U), the grid is built and
U is sampled with autocast switched off locally, so V has U's dtype. A bfloat16 grid would
place samples only to 8 mantissa bits (up to ~0.5 px at 256 px) and the TPS sums cancel terms
of ~16. Under autocast a float16/bfloat16 U gets a float32 grid (the sampler upcasts U and
casts V back); outside autocast the grid follows U's dtype as before, whatever it is.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from .sampling import check_sample_options, sample
from .transforms import (autocast_enabled, autocast_off, check_size, identity_params, make_grid, num_params,
                         params_to_theta, tps_lattice)


class STOutput(NamedTuple):
    """What a spatial transformer computed for a batch: the output ``V (N, C, H', W')``, θ in the
    transform's natural form (affine ``(N, 2, 3)``, attention ``(N, 3)``, projective ``(N, 3, 3)``, TPS the
    input control points ``(N, K, 2)``) and the sampling grid ``T_θ(G)`` ``(N, H', W', 2)``."""

    output: torch.Tensor
    theta: torch.Tensor
    grid: torch.Tensor


def conv_localisation(in_channels: int, in_size: Sequence[int], filters: int = 20, hidden: int = 20) -> nn.Sequential:
    """The paper's ST-CNN localisation net body (before the regression layer).

    2× down-sampling (max-pool), conv 5×5 (``filters``) → ReLU → max-pool 2×2 →
    conv 5×5 (``filters``) → ReLU → FC ``hidden`` → ReLU. Input ``(N, C, H, W)`` →
    ``(N, hidden)``.
    """
    body = nn.Sequential(
        nn.MaxPool2d(2),
        nn.Conv2d(in_channels, filters, 5), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 5), nn.ReLU(inplace=True),
        nn.Flatten(),
    )
    side = [((int(n) // 2 - 4) // 2) - 4 for n in in_size]  # pool, conv 5 (valid), pool, conv 5
    if min(side) < 1:
        raise ValueError(f"the ST-CNN localisation net needs inputs of at least 28 pixels a side, got {tuple(in_size)}")
    # computed, not measured by a forward pass: on the meta device (checkpoint loading) a max-pool
    # pulls in torch's symbolic shapes and sympy, ~0.3 s of a page's first visit
    return nn.Sequential(*body, nn.Linear(filters * side[0] * side[1], hidden), nn.ReLU(inplace=True))


def fc_localisation(in_channels: int, in_size: Sequence[int], hidden: int = 32) -> nn.Sequential:
    """The paper's ST-FCN localisation net body: two fully-connected layers of ``hidden`` units.

    Input ``(N, C, H, W)`` → ``(N, hidden)``.
    """
    d = in_channels * int(in_size[0]) * int(in_size[1])
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True))


class SpatialTransformer(nn.Module):
    """A spatial transformer: ``V = sample(U, T_θ(G))`` with ``θ = f_loc(U)``.

    Args:
        transform: ``"affine"`` (6), ``"attention"`` (3 = s, tx, ty), ``"projective"`` (8) or
            ``"tps"`` (2K).
        out_size: ``(H', W')`` of the output V.
        localisation: body of the localisation net mapping ``U (N, C, H, W)`` to
            ``(N, loc_features)``; default: :func:`conv_localisation` (needs ``in_channels``
            and ``in_size``).
        loc_features: width of the localisation body's output (inferred when possible).
        tps_points: K for ``"tps"`` (a square number; the 4×4 lattice by default).
        mode / backend / padding: passed to :func:`stn_core.sample`.
        init_params: flat ``(P,)`` initial θ (default: the identity transform).

    The regression layer starts with zero weights and ``init_params`` as bias, so at
    initialisation the module outputs the identity warp. ``forward`` returns V; :meth:`warp`
    returns V with the θ and grid that produced it (:class:`STOutput`). The module keeps no
    state between calls, so one instance can serve several threads.
    """

    def __init__(self, transform: str = "affine", out_size: Sequence[int] = (28, 28),
                 localisation: nn.Module | None = None, loc_features: int | None = None,
                 in_channels: int | None = None, in_size: Sequence[int] | None = None,
                 tps_points: int = 16, mode: str = "bilinear", backend: str = "fast",
                 padding: str = "zeros", init_params: torch.Tensor | None = None) -> None:
        super().__init__()
        check_sample_options(mode, backend, padding)
        self.transform = transform
        self.out_size = check_size(out_size)
        self.tps_points = tps_points
        self.mode, self.backend, self.padding = mode, backend, padding
        n_params = num_params(transform, tps_points)
        if transform == "tps":
            tps_lattice(tps_points)  # K square, ≥ 4 and ≤ MAX_TPS_POINTS, or a ValueError now
        #: What the default localisation net was built for (None with a custom one): checked in warp().
        self.in_channels = None if localisation is not None or in_channels is None else int(in_channels)
        self.in_size = None if localisation is not None or in_size is None else check_size(in_size)
        if localisation is None:
            if in_channels is None or in_size is None:
                raise ValueError("SpatialTransformer needs in_channels and in_size to build its "
                                 "default localisation net, or a localisation module")
            localisation = conv_localisation(in_channels, in_size)
        self.localisation = localisation
        if loc_features is None:
            loc_features = _infer_out_features(localisation)
        self.regression = nn.Linear(loc_features, n_params)
        init = identity_params(transform, tps_points) if init_params is None else init_params
        if init.numel() != n_params:
            raise ValueError(f"init_params must have {n_params} values for {transform!r}, got {init.numel()}")
        nn.init.zeros_(self.regression.weight)
        with torch.no_grad():
            self.regression.bias.copy_(init.reshape(-1).to(self.regression.bias.dtype))
        if transform == "tps":
            self.register_buffer("ctrl_out", tps_lattice(tps_points), persistent=False)
        else:
            self.ctrl_out = None

    def predict_params(self, u: torch.Tensor) -> torch.Tensor:
        """Flat θ ``(N, P)`` for ``U (N, C, H, W)``."""
        return self.regression(self.localisation(u))

    def forward(self, u: torch.Tensor, loc_input: torch.Tensor | None = None) -> torch.Tensor:
        """``U (N, C, H, W)`` → ``V (N, C, H', W')``.

        ``loc_input`` lets the localisation net see a different tensor than the one sampled
        (e.g. a down-sampled copy, or backbone features).
        """
        return self.warp(u, loc_input).output

    def warp(self, u: torch.Tensor, loc_input: torch.Tensor | None = None) -> STOutput:
        """Like :meth:`forward`, returning V with its θ and sampling grid (:class:`STOutput`; θ and
        the grid are part of the autograd graph: detach them to draw them)."""
        if not isinstance(u, torch.Tensor) or u.dim() != 4:
            raise ValueError(f"U must be a tensor of shape (N, C, H, W), got {getattr(u, 'shape', type(u).__name__)}")
        if loc_input is None and self.in_channels is not None and (
                u.shape[1] != self.in_channels or tuple(u.shape[2:]) != self.in_size):
            raise ValueError(f"this transformer's localisation net takes (N, {self.in_channels}, "
                             f"{self.in_size[0]}, {self.in_size[1]}) inputs, got {tuple(u.shape)}")
        params = self.predict_params(u if loc_input is None else loc_input)
        # θ may come out of a low-precision localisation net (autocast): the grid is built in
        # U's dtype, at least float32 under autocast, with autocast off (module docstring).
        dtype = u.dtype if u.is_floating_point() else params.dtype
        if autocast_enabled(u.device) and dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        with autocast_off(u.device):
            params = params.to(dtype)
            ctrl = self.ctrl_out.to(dtype) if self.ctrl_out is not None else None
            grid = make_grid(self.transform, params, self.out_size, ctrl_out=ctrl)
        v = sample(u, grid, mode=self.mode, backend=self.backend, padding=self.padding)
        return STOutput(v, params_to_theta(self.transform, params), grid)


def _infer_out_features(module: nn.Module) -> int:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot infer the localisation net's output width: pass loc_features")
    return linears[-1].out_features
