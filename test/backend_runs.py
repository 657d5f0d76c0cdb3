"""Test helper: record the batch size of every backend run of a Segmenter."""


def record_runs(seg) -> list[int]:
    """A list that gets the number of frames of each ``seg.backend.run`` call from now on
    (what a result's ``batch`` field said before it left the runtime)."""
    runs: list[int] = []
    run = seg.backend.run

    def counted(batch):
        runs.append(int(batch.shape[0]))
        return run(batch)
    seg.backend.run = counted
    return runs
