"""Test-only helpers for bag evaluation: read a small bag whole, plan shards in-process, and
a shard worker that dies on purpose."""
from __future__ import annotations

import os
from pathlib import Path
import signal
from typing import Sequence

from pspnet_ros.evaluation import DEFAULT_SHARD_FRAMES
from pspnet_ros.evaluation.bagio import BagSource, typestore
from pspnet_ros.evaluation.evaluator import EvalConfig
from pspnet_ros.evaluation.shards import number, plan_bag, Shard, ShardWorker


def read_all(path: str | os.PathLike, topics: Sequence[str] | None = None
             ) -> list[tuple[str, int, object]]:
    """Every message of a (small) bag deserialized: ``(topic, bag time ns, msg)``."""
    ts = typestore()
    with BagSource(Path(path)) as src:
        wanted = list(topics) if topics is not None else list(src.topics)
        return [(t, time, ts.deserialize_cdr(raw, mt))
                for t, mt, time, raw in src.messages(wanted)]


def plan(cfg: EvalConfig, shard_frames: int = DEFAULT_SHARD_FRAMES) -> list[Shard]:
    """All shards of ``cfg.bags``, planned in this process (as a Ray run plans them)."""
    return number([s for i, b in enumerate(cfg.bags) for s in plan_bag(b, i, cfg, shard_frames)],
                  cfg.samples)


def dying_worker(bag_name: str, frame: int) -> type[ShardWorker]:
    """A ShardWorker class whose process SIGKILLs itself when it reads the ``frame``-th frame
    of a shard of the bag named ``bag_name``. Made in a function, so Ray pickles the class by
    value and its workers need not import this test module."""

    class DyingWorker(ShardWorker):
        def frame_read(self, shard: Shard, frames: int) -> None:
            if Path(shard.path).name == bag_name and frames == frame:
                os.kill(os.getpid(), signal.SIGKILL)

    return DyingWorker
