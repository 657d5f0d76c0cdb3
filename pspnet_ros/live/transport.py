"""The Fast DDS large-frames profile that camera-sized frames between processes need (see
docs/ROS_INTERFACE.md; the transport benchmark is ``scripts/bench_transport.py``)."""
from __future__ import annotations

import os
from pathlib import Path

PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
PROFILE_NAME = 'fastdds_large_frames.xml'


def large_frames_profile() -> Path:
    """The shipped Fast DDS profile for camera-sized frames (source tree or installed share)."""
    from ..core.files import shipped_file
    return shipped_file('config', PROFILE_NAME)


def profile_env(env: dict | None = None, profile: str | os.PathLike | None = None) -> dict:
    """A copy of ``env`` (default ``os.environ``) that loads ``profile`` (default: the shipped
    large-frames profile); ``profile=''`` removes any profile instead."""
    out = dict(os.environ if env is None else env)
    if profile == '':
        out.pop(PROFILE_ENV, None)
    else:
        out[PROFILE_ENV] = str(profile or large_frames_profile())
    return out


def use_large_frames_profile() -> str:
    """Load the large-frames profile in this process unless one is set already. Call it before
    ``rclpy.init()``: Fast DDS reads the variable when the participant is created."""
    return os.environ.setdefault(PROFILE_ENV, str(large_frames_profile()))
