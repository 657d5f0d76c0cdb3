"""Where the package's shipped files are, and which files are images."""
from __future__ import annotations

import os
from pathlib import Path
import sys

# Every image reader in the package accepts exactly these (lower-case) suffixes.
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')

DEFAULT_CARD = 'pspnet_mobilenetv2_camvid.yaml'


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image(p))


def shipped_file(folder: str, name: str) -> Path:
    """A file the package ships in ``folder`` (``models``, ``config``): the source tree's, else
    the installed ``share/pspnet_ros`` (ament index of a colcon install, then ``sys.prefix``)."""
    candidates = [Path(__file__).resolve().parents[2] / folder / name]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('pspnet_ros')) / folder / name)
    except Exception:  # not in a ROS install, or package not indexed
        pass
    candidates.append(Path(sys.prefix) / 'share' / 'pspnet_ros' / folder / name)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def default_card_path() -> Path:
    """The card of the model shipped with the package."""
    return shipped_file('models', DEFAULT_CARD)
