"""STN Lab core: spatial transformer networks (Jaderberg et al., NIPS 2015) in PyTorch.

Coordinate convention: normalised [-1, 1], ``align_corners=False``; θ maps output → input.
"""

from .sampling import sample
from .stn import SpatialTransformer, conv_localisation, fc_localisation
from .transforms import (
    TRANSFORM_KINDS,
    affine_grid,
    attention_grid,
    base_grid,
    compose_affine,
    identity_grid,
    identity_params,
    make_grid,
    num_params,
    params_to_theta,
    projective_denominator,
    projective_grid,
    tps_bending_energy,
    tps_coefficients,
    tps_grid,
    tps_lattice,
)

__all__ = [
    "TRANSFORM_KINDS", "SpatialTransformer", "affine_grid", "attention_grid", "base_grid",
    "compose_affine", "conv_localisation", "fc_localisation", "identity_grid", "identity_params",
    "make_grid", "num_params", "params_to_theta", "projective_denominator", "projective_grid",
    "sample", "tps_bending_energy", "tps_coefficients", "tps_grid", "tps_lattice",
]
