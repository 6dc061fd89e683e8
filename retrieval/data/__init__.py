"""Image-caption data for retrieval: loaders, the synthetic set, noisy correspondence.

* :class:`RetrievalSplit` -- images, captions and the caption-to-image pairing of a split.
* :func:`load_split` -- recognise a folder's format and load one split.
* :func:`load_karpathy`, :func:`load_caption_file` -- Karpathy JSON and published id files.
* :func:`load_folder`, :func:`write_folder`, :func:`load_dense_captions` -- folder format.
* :func:`load_captions_jsonl` -- a ``captions.jsonl`` folder (one line per image: Flickr8k).
* :func:`save_features`, :func:`load_features`, :class:`FeatureSplit` -- cached features.
* :func:`make_synthetic`, :func:`swap_caption` -- the offline synthetic set;
  :func:`make_scenario` -- its testbeds per method (sparse captions, small objects, twins).
* :func:`load_fdrd` -- FDRD fine-grained test files (images by file name, negatives).
* :func:`load_rgb`, :func:`drop_unreadable_images`, :class:`UnreadableImageError` -- image
  files: 16-bit images scaled right, unreadable files named or left out.
* :func:`shuffle_captions`, :func:`load_noise_file`, :func:`noisy_fraction`,
  :func:`add_noise` -- noisy correspondence (spec section 3).
* :func:`shipped_file`, :func:`get_data_home`, :func:`clear_data_home` -- the published
  retrieval files (id orders, test captions, noise indices), downloaded into the data home on
  first use and checked against their SHA-256.
* :class:`PairDataset`, :class:`ImageDataset`, :class:`TextDataset` -- torch datasets,
  imported lazily so that the rest works without torch.
"""

from ._load import load_split
from ._split import RetrievalSplit
from .captions_jsonl import load_captions_jsonl
from .fdrd import load_fdrd
from .features import FeatureSplit, load_features, save_features
from .folder import load_dense_captions, load_folder, write_folder
from .images import UnreadableImageError, drop_unreadable_images, load_rgb
from .karpathy import load_caption_file, load_karpathy, read_id_file
from .noise import add_noise, load_noise_file, noisy_fraction, save_noise_file, shuffle_captions
from ._fetch import ChecksumError, DataNotFoundError, clear_data_home, get_data_home
from .shipped import PUBLISHED_FILES, canonical_ids_file, is_downloaded, shipped_data_dir, shipped_file
from .scenarios import make_scenario
from .synthetic import describe_objects, make_synthetic, swap_caption

_TORCH_NAMES = ("PairDataset", "ImageDataset", "TextDataset")

__all__ = [
    "RetrievalSplit",
    "FeatureSplit",
    "load_split",
    "load_karpathy",
    "load_caption_file",
    "read_id_file",
    "load_folder",
    "load_captions_jsonl",
    "write_folder",
    "load_dense_captions",
    "save_features",
    "load_features",
    "make_synthetic",
    "make_scenario",
    "swap_caption",
    "describe_objects",
    "load_fdrd",
    "load_rgb",
    "drop_unreadable_images",
    "UnreadableImageError",
    "shuffle_captions",
    "load_noise_file",
    "noisy_fraction",
    "add_noise",
    "save_noise_file",
    "shipped_data_dir",
    "shipped_file",
    "canonical_ids_file",
    "PUBLISHED_FILES",
    "is_downloaded",
    "get_data_home",
    "clear_data_home",
    "ChecksumError",
    "DataNotFoundError",
    *_TORCH_NAMES,
]


def __getattr__(name: str):
    # torch is an extra: only the torch datasets need it, so import them on first use.
    if name in _TORCH_NAMES:
        from . import torch_datasets

        return getattr(torch_datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
