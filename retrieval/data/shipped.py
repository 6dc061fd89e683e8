"""Published retrieval files: Karpathy id orders, test captions, dense captions, noise indices.

The project commits none of them: each is catalogued here (pinned URL, size, SHA-256) and
downloaded into the data home on first use (:mod:`._fetch`: ``$MVLEARN_PLUS_DATA``, else
``~/mvlearn_plus_data``), under ``retrieval/``. The card is ``datasets/retrieval/README.md``
(``retrieval/_datasets/README.md`` in an installed wheel).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._fetch import RemoteFile, fetch, get_data_home, github_file, is_cached

logger = logging.getLogger(__name__)

__all__ = ["PUBLISHED_FILES", "LOCAL_SETS", "canonical_ids_file", "is_downloaded", "local_set_dir",
           "shipped_data_dir", "shipped_file"]

# Folder of the data home that holds these files.
_SUBFOLDER = "retrieval"

# Pinned commits of the repositories that published the files. Where only an abbreviated commit
# is known, GitHub resolves it; the SHA-256 pins the bytes either way.
_AVSE = ("liuyyy111/AVSE", "b02e8853583a4da1113959913347acc1d12c69e4")
_NCR = ("XLearning-SCU/2021-NeurIPS-NCR", "60256ba1095798319099af6c93e8e2b4edf563fa")
_DCAR = ("wyf202322/DCAR", "4cb23425ce5e9e20aa986b0e4a24e5508d45a1ec")
_BICRO = ("xu5zhao/BiCro", "02316315d8be3da798f150e51c3d6315bb1b9234")
_RCL = ("penghu-cs/RCL", "1096a24107a7")


def _file(relative: str, repo: tuple[str, str], source_path: str, sha256: str,
          size: int) -> RemoteFile:
    return github_file(f"{_SUBFOLDER}/{relative}", *repo, source_path, sha256, size)


_FILES = (
    _file("f30k/test_caps.txt", _AVSE, "data/f30k/test_caps.txt",
          "eca5cf082363989ad595a9f0fb5aa37e0a491cd499dafaa9f49bb013e52c4a30", 328759),
    _file("f30k/test_ids.txt", _AVSE, "data/f30k/test_ids.txt",
          "4f3298190e704c5b115da9e0427b582e1342e52dbd553dc926000b3f50622d94", 28150),
    _file("f30k/train_ids.txt", _AVSE, "data/f30k/train_ids.txt",
          "4f08ab9768d63cfa41cdddcdcedce4c27026d0fa729f29e29a7b6fa9a11cecd1", 163600),
    _file("f30k/id_mapping.json", _AVSE, "data/f30k/id_mapping.json",
          "ce9ab368dc974ff4daaedf5ac1c26232cac439220d1670341f5f4f5fdf521bbe", 818590),
    _file("f30k/f30k_test.jsonl", _AVSE, "data/f30k/f30k_test.jsonl",
          "a3071bde8c7cf6463df0d9aa660b8ce5d034e9ce99b113ac4a3ee095239a0da7", 662079),
    _file("coco/testall_caps.txt", _AVSE, "data/coco/testall_caps.txt",
          "17842b221f8aa3cb409f01fd732335d929342279d73eff78a4caa04e383f37c6", 1351883),
    _file("coco/testall_ids.txt", _AVSE, "data/coco/testall_ids.txt",
          "76d71e33afff62d28b7f7f93ee36f7a019aa7cc8295d7a99159d459a85c0bc17", 170140),
    _file("coco/train_ids.txt", _AVSE, "data/coco/train_ids.txt",
          "d9a332ae0028daf92be41f996ec71427ef7d6385d9dd99c698432ea64c8ac385", 771372),
    _file("coco/coco_testall.jsonl", _AVSE, "data/coco/coco_testall.jsonl",
          "c8535692a657ec41600e726f9f384af50a9a421b0c7b43b399a855ef3eb0aeee", 3259115),
    _file("cc152k/test_caps_img_urls.csv", _NCR, "cc152k/test_caps_img_urls.csv",
          "d2815fb2632a09f108ad9e04d2107396a4a70dce4309c7acc3108f163c681d91", 183288),
    _file("fdrd/flower_test.json", _DCAR, "FDRD/test/flower_test.json",
          "71cca34c873d07c3bd90027bc7aaabd16c1728c89339c0a2a0314bca16ff9ded", 2703130),
    _file("fdrd/pets_test.json", _DCAR, "FDRD/test/pets_test.json",
          "0a64d73036cd3257247a44025180308e66f3696a702f1f4be0a679388ce3d46d", 3454756),
    _file("fdrd/plane_test.json", _DCAR, "FDRD/test/plane_test.json",
          "0f267514cb55ab7f260b9674129b167a9dd6321a829996b26f628a21b370aa28", 2564515),
    _file("noise/bicro/f30k_precomp/f30k_precomp_0.2.npy", _BICRO, "noise_index/f30k_precomp_0.2.npy",
          "cdd8b019e69dc1341316fb089a1d9e2c32ca14a62cdd48d72c6af49ab0120f50", 1160128),
    _file("noise/bicro/f30k_precomp/f30k_precomp_0.4.npy", _BICRO, "noise_index/f30k_precomp_0.4.npy",
          "702bd86f858d04957723b04425e8f2677d5d2c65ae66ec7dc63cd22981ba6993", 1160128),
    _file("noise/bicro/f30k_precomp/f30k_precomp_0.6.npy", _BICRO, "noise_index/f30k_precomp_0.6.npy",
          "24fc7258b81eb856ce273ad59a5f296545b3e9beddbe2edc6797e98c994bc2d1", 1160128),
    _file("noise/rcl/f30k_precomp/noise_inx_0.2.npy", _RCL, "data/f30k_precomp/noise_inx_0.2.npy",
          "c15283bc28e31f81ab9e47f411ff036cb7c177749e8fd5ed7628d4cf6a33af1e", 232128),
    _file("noise/rcl/f30k_precomp/noise_inx_0.4.npy", _RCL, "data/f30k_precomp/noise_inx_0.4.npy",
          "fcc76de55d2c2559f89f01d8c43c8b0ac53651a8d44f45578a372853d79c06ef", 232128),
    _file("noise/rcl/f30k_precomp/noise_inx_0.6.npy", _RCL, "data/f30k_precomp/noise_inx_0.6.npy",
          "bde4026b38d17289910b5ccd0f68b69d803161dadacc36653c561b6ea33c679c", 232128),
    _file("noise/rcl/f30k_precomp/noise_inx_0.8.npy", _RCL, "data/f30k_precomp/noise_inx_0.8.npy",
          "64b39dd587545e0edc18b5db967d65464f3d345311966175f8f49c3432dc0ae8", 232128),
    _file("noise/rcl/coco_precomp/noise_inx_0.2.npy", _RCL, "data/coco_precomp/noise_inx_0.2.npy",
          "890451fe01c96c658a7ae5bd22284c3186ccc20bad83c9036b2a4734f02a460e", 906424),
    _file("noise/rcl/coco_precomp/noise_inx_0.4.npy", _RCL, "data/coco_precomp/noise_inx_0.4.npy",
          "0be1fc344fb89b6906dd355bed060a1cb59ef497f21ab248d68807b1a4ca3e3e", 906424),
    _file("noise/rcl/coco_precomp/noise_inx_0.6.npy", _RCL, "data/coco_precomp/noise_inx_0.6.npy",
          "ea5ab664f5defd1b250a32f286794322beb98f1ac4b604dad45280299ac5c6d5", 906424),
    _file("noise/rcl/coco_precomp/noise_inx_0.8.npy", _RCL, "data/coco_precomp/noise_inx_0.8.npy",
          "5bb1cdd4fb9a86a16cf5ab54409bfb5deb59280c009ab3184a70f1ad66a08050", 906424),

)

#: Every published retrieval file, by its path under ``retrieval/`` of the data home.
PUBLISHED_FILES: dict[str, RemoteFile] = {
    remote.path[len(_SUBFOLDER) + 1:]: remote for remote in _FILES
}

# Karpathy JSON file name -> {split: published id file} giving the canonical image order (spec
# 2.1); the training order is the "precomp" order the published noise files index (spec 3).
_CANONICAL_IDS = {
    "dataset_flickr30k.json": {"test": "f30k/test_ids.txt", "train": "f30k/train_ids.txt"},
    "dataset_coco.json": {"test": "coco/testall_ids.txt", "train": "coco/train_ids.txt"},
}


def shipped_data_dir(data_home: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the data home that holds the published retrieval files.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        The data home (default: ``$MVLEARN_PLUS_DATA``, else ``~/mvlearn_plus_data``).

    Returns
    -------
    pathlib.Path
        ``<data home>/retrieval`` (files appear there as :func:`shipped_file` fetches them).
    """
    return get_data_home(data_home) / _SUBFOLDER


def shipped_file(
    relative_path: str,
    *,
    data_home: str | os.PathLike[str] | None = None,
    download_if_missing: bool = True,
) -> Path:
    """Path of a published retrieval file such as ``"f30k/test_ids.txt"``, downloaded if needed.

    Parameters
    ----------
    relative_path : str
        A key of :data:`PUBLISHED_FILES`.
    data_home : str or os.PathLike, optional
        The data home (default: ``$MVLEARN_PLUS_DATA``, else ``~/mvlearn_plus_data``).
    download_if_missing : bool, default=True
        If False, a file missing from the data home raises instead of being downloaded.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    KeyError
        If the file is not one of the published files (the message lists them).
    FileNotFoundError
        If it is not in the data home and could not be downloaded (reason, URL and folder
        named).
    ValueError
        If the cached or downloaded file's SHA-256 is not the published one (both named).
    """
    remote = PUBLISHED_FILES.get(relative_path)
    if remote is None:
        raise KeyError(f"{relative_path!r} is not a published retrieval file; known: "
                       f"{', '.join(sorted(PUBLISHED_FILES))}")
    return fetch(remote, data_home=data_home, download_if_missing=download_if_missing)


def canonical_ids_file(json_name: str, split: str, *, required: bool = False) -> Path | None:
    """The published id file that orders ``split`` of a Karpathy JSON, if there is one.

    None when the JSON has no published order. When the file is neither in the data home nor
    downloadable now, None as well (the caller keeps the JSON's own order), unless
    ``required``: then the download error is raised.
    """
    relative = _CANONICAL_IDS.get(Path(json_name).name, {}).get(split)
    if relative is None:
        return None
    try:
        return shipped_file(relative)
    except FileNotFoundError:
        if required:
            raise
        logger.warning("%s: the published %s order %s is not available (not in the data home, "
                       "no download); keeping the JSON order", json_name, split, relative)
        return None


def is_downloaded(relative_path: str, data_home: str | os.PathLike[str] | None = None) -> bool:
    """Whether a published retrieval file is already in the data home."""
    return is_cached(PUBLISHED_FILES[relative_path], data_home)


#: Sets that cannot be downloaded by the project (their terms forbid redistribution): each is a
#: folder the user puts under ``retrieval/`` of the data home, described by its card.
LOCAL_SETS: dict[str, str] = {
    "flickr8k_1k": "datasets/retrieval/flickr8k_1k.md",
}


def local_set_dir(name: str, data_home: str | os.PathLike[str] | None = None,
                  *, required: bool = True) -> Path | None:
    """The folder of a local-only retrieval set such as ``"flickr8k_1k"`` in the data home.

    Parameters
    ----------
    name : str
        A key of :data:`LOCAL_SETS`.
    data_home : str or os.PathLike, optional
        Where to look; default as :func:`shipped_data_dir`.
    required : bool, default=True
        If False, a set that is not there gives None instead of an error.

    Returns
    -------
    pathlib.Path or None
        ``<data home>/retrieval/<name>``, holding its ``captions.jsonl``.

    Raises
    ------
    KeyError
        If ``name`` is not a local set (the message lists them).
    FileNotFoundError
        If the folder is not there and ``required`` (the message says where to put it and
        which card says how to get it).
    """
    if name not in LOCAL_SETS:
        raise KeyError(f"{name!r} is not a local retrieval set; known: {', '.join(LOCAL_SETS)}")
    folder = shipped_data_dir(data_home) / name
    if (folder / "captions.jsonl").is_file():
        return folder
    if not required:
        return None
    raise FileNotFoundError(f"{folder} holds no captions.jsonl: the project cannot download "
                            f"{name}; build the folder as {LOCAL_SETS[name]} says, under "
                            "retrieval/ of the data home ($MVLEARN_PLUS_DATA)")
