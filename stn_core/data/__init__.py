"""STN Lab data layer: MNIST idx files, CUB-200-2011, user images, shipped samples.

Errors from this package are ``DataError`` (bad / missing data files) and ``ImageError``
(unusable uploaded image); both subclass ValueError and carry a one-sentence message.
CLI: ``python -m stn_core.data mnist --from PATH_OR_URL`` / ``python -m stn_core.data cub --from PATH``.
"""

from .common import DataError, default_data_dir, repo_root, shared_data_dir
from .cub import CubRecord, cub_class_names, import_cub, load_cub, parse_classes
from .images import ImageError, load_image, load_image_file, to_gray
from .mnist import import_mnist, load_mnist, parse_idx, read_idx, write_idx
from .samples import list_sample_images, load_cub_sample, load_mnist_sample

__all__ = [
    "DataError",
    "ImageError",
    "CubRecord",
    "default_data_dir",
    "repo_root",
    "shared_data_dir",
    "load_mnist",
    "import_mnist",
    "parse_idx",
    "read_idx",
    "write_idx",
    "load_cub",
    "import_cub",
    "cub_class_names",
    "parse_classes",
    "load_image",
    "load_image_file",
    "to_gray",
    "load_mnist_sample",
    "load_cub_sample",
    "list_sample_images",
]
