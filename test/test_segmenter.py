"""Segmenter on real CamVid frames and on awkward inputs."""
import cv2
import numpy as np
import pytest

from pspnet_ros.core import ImageError, ModelCard, Segmenter, read_image
from pspnet_ros.core.data import find_pairs, split_folders
from pspnet_ros.training.validation import evaluate_pairs

from backend_runs import record_runs
from conftest import DEFAULT_CARD


@pytest.fixture(scope='module')
def frame(camvid):
    return read_image(camvid / 'val' / '0016E5_07965.png')


def test_default_model_card_documents_what_it_needs():
    card = ModelCard.load(DEFAULT_CARD)
    assert card.weights_path.is_file()
    assert card.weights_path.stat().st_size < 20e6
    assert card.label_set == 'camvid' and card.num_classes == 11
    # Sides of 16k+1 (features on the input corners) whose stride-16 features divide every
    # pyramid bin (1, 2, 3, 6): 96k-15, the Edge TPU's clean graph.
    assert card.output_stride == 16 and all((v + 15) % 96 == 0 for v in card.input_size)
    assert card.metrics['val']['miou'] >= 0.71
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
    seg = Segmenter(DEFAULT_CARD, resize_mode='letterbox', input_size=(369, 369))
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


@pytest.fixture(scope='module')
def three_frames(camvid):
    names = ('0016E5_07965.png', '0016E5_07975.png', '0016E5_08085.png')
    frames = [read_image(camvid / 'val' / n) for n in names]
    frames[2] = cv2.resize(frames[2], (320, 240), interpolation=cv2.INTER_AREA)
    return frames


@pytest.mark.slow
@pytest.mark.parametrize('options', [{}, {'channels_last': True}], ids=['nchw', 'nhwc'])
def test_a_batch_gives_each_frame_what_it_gets_alone(three_frames, options):
    seg = Segmenter(DEFAULT_CARD, backend_options=options)
    regions = {'ahead': (0.3, 0.6, 0.7, 1.0)}
    runs = record_runs(seg)
    alone = [seg(f, confidence=True, regions=regions) for f in three_frames]
    batch = seg.segment_batch(three_frames, confidence=True, regions=regions)
    assert runs == [1, 1, 1, 3]
    for a, b in zip(alone, batch):
        assert b.labels.shape == a.labels.shape
        assert np.array_equal(b.labels, a.labels)
        np.testing.assert_allclose(b.confidence, a.confidence, atol=1e-4)
        assert np.array_equal(b.occupancy.counts, a.occupancy.counts)
        assert np.array_equal(b.occupancy.regions['ahead'][0], a.occupancy.regions['ahead'][0])
        assert set(b.timings) == set(a.timings)
    # Distinct frames give distinct masks: nothing is shared between batch members.
    assert not np.array_equal(batch[0].labels, batch[1].labels)


def test_batch_flags_are_per_frame_and_must_match_the_frame_count(
        three_frames, default_segmenter):
    res = default_segmenter.segment_batch(three_frames, confidence=[True, False, False],
                                          occupancy=[False, False, True])
    assert [r.confidence is None for r in res] == [False, True, True]
    assert [r.occupancy is None for r in res] == [True, True, False]
    assert default_segmenter.segment_batch([]) == []
    with pytest.raises(ValueError, match='3 images but 2 confidence and 3 occupancy flags'):
        default_segmenter.segment_batch(three_frames, confidence=[True, False])


def test_a_bad_frame_in_a_batch_is_named_before_anything_runs(three_frames, default_segmenter):
    with pytest.raises(ImageError, match='zero size'):
        default_segmenter.segment_batch([three_frames[0], np.zeros((0, 5, 3), np.uint8)])


@pytest.mark.slow
def test_test_time_flip_makes_the_masks_mirror_symmetric(frame):
    mirrored = np.ascontiguousarray(frame[:, ::-1])
    plain = Segmenter(DEFAULT_CARD)
    # One network pass is not exactly mirror-symmetric ...
    a, b = plain(frame).labels, plain(mirrored).labels
    assert (a == b[:, ::-1]).mean() < 0.99
    # ... the mean over a frame and its mirror image is, to float rounding.
    flip = Segmenter(DEFAULT_CARD, test_time_flip=True)
    fa, fb = flip(frame, confidence=True), flip(mirrored)
    assert (fa.labels == fb.labels[:, ::-1]).mean() > 0.9999
    assert 0 < fa.confidence.min() and fa.confidence.max() <= 1.0 + 1e-6
    # Batches give each frame the same answer as one at a time.
    batch = flip.segment_batch([frame, mirrored])
    assert (batch[0].labels == fa.labels).mean() > 0.9999
    assert (batch[1].labels == fb.labels).mean() > 0.9999


def test_test_time_flip_needs_class_scores():
    import dataclasses
    card = dataclasses.replace(ModelCard.load(DEFAULT_CARD), output_kind='labels')
    with pytest.raises(ValueError, match='test_time_flip needs class scores, but model '
                                         'pspnet_mobilenetv2_camvid outputs labels'):
        Segmenter(card, test_time_flip=True)


def test_colorize_paints_each_id_its_palette_colour_and_unknown_ids_black():
    from pspnet_ros.core.segmenter import colorize
    palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    ids = np.array([[0, 1, 2, 3], [255, 2, 1, 0]])
    want = np.array([[[10, 20, 30], [40, 50, 60], [70, 80, 90], [0, 0, 0]],
                     [[0, 0, 0], [70, 80, 90], [40, 50, 60], [10, 20, 30]]], np.uint8)
    for dtype in (np.uint8, np.uint16):
        got = colorize(ids.astype(dtype), palette)
        assert got.dtype == np.uint8 and np.array_equal(got, want), dtype
    assert np.array_equal(colorize(ids.astype(np.uint8)[:, ::2], palette), want[:, ::2])


def test_class_counts_are_exact_and_ignore_ids_beyond_the_classes():
    from pspnet_ros.core.segmenter import count_classes
    labels = np.array([[0, 0, 1, 7], [2, 2, 2, 255]], np.uint8)
    for lab in (labels, labels.astype(np.uint16), np.repeat(labels, 2, axis=1)[:, ::2]):
        counts, fractions = count_classes(lab, 3)
        assert counts.dtype == np.int64 and counts.tolist() == [2, 1, 3]
        np.testing.assert_array_equal(fractions, np.float32([2 / 8, 1 / 8, 3 / 8]))
