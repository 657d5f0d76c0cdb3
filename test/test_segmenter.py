"""Segmenter on real CamVid frames and on awkward inputs."""
import numpy as np
import pytest

from pspnet_ros.core import ImageError, ModelCard, Segmenter, read_image
from pspnet_ros.core.data import find_pairs, split_folders
from pspnet_ros.core.evaluate import evaluate_pairs

from conftest import DEFAULT_CARD


@pytest.fixture(scope='module')
def frame(camvid):
    return read_image(camvid / 'val' / '0016E5_07965.png')


def test_default_model_card_documents_what_it_needs():
    card = ModelCard.load(DEFAULT_CARD)
    assert card.weights_path.is_file()
    assert card.weights_path.stat().st_size < 20e6
    assert card.label_set == 'camvid' and card.num_classes == 11
    assert all((v + 7) % 48 == 0 for v in card.input_size)
    assert card.metrics['val']['miou'] >= 0.55
    assert card.licence and card.training_data and card.reproduce.startswith('pspnet-ros train')


@pytest.mark.slow
def test_default_model_reaches_its_card_miou_on_camvid_val(camvid, default_segmenter):
    card = default_segmenter.card
    result = evaluate_pairs(default_segmenter, find_pairs(*split_folders(camvid, 'val')))
    assert result['images'] == 101
    assert result['miou'] >= 0.55
    assert result['miou'] == pytest.approx(card.metrics['val']['miou'], abs=0.002)


def test_result_is_at_input_resolution_with_occupancy_and_timings(frame, default_segmenter):
    res = default_segmenter(frame, confidence=True,
                            regions={'ahead': (0.3, 0.6, 0.7, 1.0)})
    assert res.labels.shape == (360, 480) and res.labels.dtype == np.uint8
    assert res.labels.max() < 11
    assert res.confidence.shape == (360, 480) and res.confidence.dtype == np.float32
    assert 0 < res.confidence.min() and res.confidence.max() <= 1.0 + 1e-6
    occ = res.occupancy
    assert occ.counts.sum() == 360 * 480
    assert occ.fractions.sum() == pytest.approx(1.0, abs=1e-5)
    counts, fractions = occ.regions['ahead']
    assert counts.sum() == (360 - 216) * (336 - 144)
    assert set(res.timings) == {'convert', 'preprocess', 'inference', 'postprocess', 'total'}
    # A street scene from a car: road is the most common class in the region ahead.
    assert default_segmenter.class_names[int(np.argmax(counts))] == 'road'


@pytest.mark.parametrize('shape', [(1, 1), (37, 53), (720, 1280)])
def test_any_size_gives_labels_of_that_size(default_segmenter, shape):
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert default_segmenter(img).labels.shape == shape


def test_grey_rgba_and_16bit_are_converted_as_documented(frame, default_segmenter):
    seg = default_segmenter
    grey = frame.mean(axis=2).astype(np.uint8)
    as_rgb = seg(np.repeat(grey[:, :, None], 3, axis=2)).labels
    assert np.array_equal(seg(grey).labels, as_rgb)
    assert np.array_equal(seg(grey[:, :, None]).labels, as_rgb)
    rgba = np.dstack([frame, np.full(frame.shape[:2], 7, np.uint8)])
    base = seg(frame).labels
    assert np.array_equal(seg(rgba).labels, base)
    assert np.array_equal(seg(frame.astype(np.uint16) * 257).labels, base)


@pytest.mark.parametrize('image,match', [
    (np.zeros((0, 5, 3), np.uint8), 'zero size'),
    (np.zeros((4, 4, 3), np.float32), 'unsupported pixel type float32'),
    (np.zeros((4, 4, 2), np.uint8), 'got shape'),
    (np.zeros((4, 4, 3, 1), np.uint8), 'got shape'),
    ([[1, 2]], 'numpy array'),
])
def test_bad_images_raise_specific_errors(default_segmenter, image, match):
    with pytest.raises(ImageError, match=match):
        default_segmenter(image)


def test_huge_images_are_refused_before_any_work():
    seg = Segmenter(DEFAULT_CARD, max_pixels=1000)
    with pytest.raises(ImageError, match='over the limit of 1000'):
        seg(np.zeros((40, 40, 3), np.uint8))


def test_letterbox_keeps_aspect_and_still_returns_full_size(frame):
    seg = Segmenter(DEFAULT_CARD, resize_mode='letterbox', input_size=(281, 281))
    res = seg(frame)
    assert res.labels.shape == (360, 480)
    stretch = Segmenter(DEFAULT_CARD)(frame).labels
    assert (res.labels == stretch).mean() > 0.75


def test_missing_and_corrupt_image_files(tmp_path):
    with pytest.raises(ImageError, match='not found'):
        read_image(tmp_path / 'nope.png')
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 20)
    with pytest.raises(ImageError, match='could not decode'):
        read_image(bad)
