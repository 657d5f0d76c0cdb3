"""Rosbag evaluation: replay bags through the Segmenter, score against labels, write bags."""

# First header stamp of bags written by make-bag (seconds). Here, not in makebag.py, so the
# CLI can show it without importing rosbags.
DEFAULT_START_STAMP = 1_700_000_000.0
# Frames per time-range shard of a long bag (eval --workers); here for the same reason.
DEFAULT_SHARD_FRAMES = 500
