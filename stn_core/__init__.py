"""STN Lab core: spatial transformer networks (Jaderberg et al., NIPS 2015) in PyTorch.

Coordinate convention: normalised [-1, 1], ``align_corners=False``; θ maps output → input.

Layout: the paper's maths (``transforms`` → grid generators, ``sampling`` → the sampler and its
(sub)gradients, ``stn`` → :class:`SpatialTransformer`, ``dcn`` → deformable convolution for contrast);
``models/`` every model family; ``data/`` datasets, distortions and tasks; ``train/`` the training loop
and CLIs; ``checkpoints`` safetensors + JSON I/O; ``registry`` the catalogue of shipped checkpoints;
``paper`` the published numbers; ``analysis/`` the computations behind reports and pages.
"""

from .checkpoints import CheckpointError, load_model, save_checkpoint
from .data.distortions import KINDS as DISTORTIONS
from .data.distortions import distort
from .data.tasks import TASKS, fixed_test_set
from .models import MODEL_NAMES, build_model, count_params
from .sampling import sample
from .stn import SpatialTransformer, conv_localisation, fc_localisation
from .transforms import (TRANSFORM_KINDS, affine_grid, attention_grid, base_grid, compose_affine, identity_grid,
                         identity_params, make_grid, num_params, params_to_theta, projective_denominator,
                         projective_grid, tps_bending_energy, tps_coefficients, tps_grid, tps_lattice)

__all__ = [
    "CheckpointError", "DISTORTIONS", "MODEL_NAMES", "TASKS", "build_model", "count_params", "distort",
    "fixed_test_set", "load_model", "save_checkpoint",
    "TRANSFORM_KINDS", "SpatialTransformer", "affine_grid", "attention_grid", "base_grid",
    "compose_affine", "conv_localisation", "fc_localisation", "identity_grid", "identity_params",
    "make_grid", "num_params", "params_to_theta", "projective_denominator", "projective_grid",
    "sample", "tps_bending_energy", "tps_coefficients", "tps_grid", "tps_lattice",
]
