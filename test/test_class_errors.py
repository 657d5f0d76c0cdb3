"""scripts/class_errors.py: the pole run-width measure it bins recall by."""
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load():
    path = ROOT / 'scripts' / 'class_errors.py'
    spec = importlib.util.spec_from_file_location('class_errors', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_widths_gives_each_pixel_the_length_of_its_horizontal_run():
    mask = np.array([[1, 1, 0, 1, 0, 0, 1],
                     [0, 0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 1, 1, 1, 1],
                     [0, 1, 1, 1, 0, 1, 1]], bool)
    want = np.array([[2, 2, 0, 1, 0, 0, 1],
                     [0, 0, 0, 0, 0, 0, 0],
                     [7, 7, 7, 7, 7, 7, 7],
                     [0, 3, 3, 3, 0, 2, 2]], np.int32)
    got = _load().run_widths(mask)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_run_widths_of_an_empty_mask_is_all_zero():
    got = _load().run_widths(np.zeros((3, 5), bool))
    np.testing.assert_array_equal(got, np.zeros((3, 5), np.int32))


def test_width_bins_cover_every_width_once():
    bins = _load().WIDTH_BINS
    for w in range(1, 64):
        hits = [b for b in bins if w >= b[0] and (b[1] is None or w <= b[1])]
        assert len(hits) == 1, (w, hits)
