"""Third-party models run from a model card alone: Coral's quantised DeepLab files."""
from pathlib import Path

from backend_runs import record_runs
from conftest import ROOT
import numpy as np
import pytest

from pspnet_ros.core import ModelCard, Segmenter, read_image
from pspnet_ros.core.backends import BackendUnavailable
from pspnet_ros.core.image import read_label

CARDS = ROOT / 'models' / 'third_party'
CITYSCAPES = CARDS / 'coral_deeplab_mobilenet_edgetpu_slim_cityscapes.yaml'
PASCAL = CARDS / 'coral_deeplabv3_mnv2_pascal.yaml'
PASCAL_DM05 = CARDS / 'coral_deeplabv3_mnv2_dm05_pascal.yaml'


def _segmenter(card_path: Path, backend: str = 'tflite') -> Segmenter:
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed '
                        '(pip install ai-edge-litert)')
    card = ModelCard.load(card_path)
    if not card.weights_path.is_file():
        pytest.skip(f'{card.weights_path} is not present (shared Coral models)')
    return Segmenter(card, backend=backend)


def _agreement(seg: Segmenter, coral: Path, stem: str) -> float:
    labels = seg(read_image(coral / f'{stem}_segmentation.bmp'), occupancy=False).labels
    mask = read_label(coral / f'{stem}_segmentation_mask.bmp')  # grey BMP: value = class id
    assert labels.shape == mask.shape
    return float((labels == mask).mean())


@pytest.mark.parametrize('path', [CITYSCAPES, PASCAL, PASCAL_DM05])
def test_coral_cards_point_at_the_shared_models_and_describe_their_io(path):
    card = ModelCard.load(path)
    assert card.weights.startswith('../../../shared/models/coral/')
    assert (card.input_size, card.input_dtype, card.input_layout) == ([513, 513], 'uint8', 'NHWC')
    assert (card.output_kind, card.format) == ('labels', 'tflite')


def test_coral_cityscapes_model_agrees_with_its_reference_mask(coral):
    seg = _segmenter(CITYSCAPES)
    assert seg.class_names[0] == 'road'  # the model's 0 is road, not "background"
    assert _agreement(seg, coral, 'cityscapes') >= 0.90


def test_coral_pascal_model_agrees_with_the_bird_mask(coral):
    seg = _segmenter(PASCAL)
    assert _agreement(seg, coral, 'bird') >= 0.97
    labels = seg(read_image(coral / 'bird_segmentation.bmp')).labels
    assert seg.class_names[int(np.bincount(labels.ravel())[1:].argmax()) + 1] == 'bird'


def test_coral_pascal_half_width_model_finds_the_bird(coral):
    assert _agreement(_segmenter(PASCAL_DM05), coral, 'bird') >= 0.95


def test_coral_model_output_is_int64_labels_at_513(coral):
    seg = _segmenter(PASCAL)
    batch, _ = seg.preprocess(read_image(coral / 'bird_segmentation.bmp'))
    assert batch.dtype == np.uint8 and batch.shape == (1, 513, 513, 3)
    out = seg.backend.run(batch)
    assert out.dtype == np.int64 and out.shape == (1, 513, 513)


def test_edgetpu_backend_takes_the_same_coral_file_or_says_what_is_missing(coral):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    try:
        seg = _segmenter(CITYSCAPES, backend='edgetpu')
    except BackendUnavailable as exc:
        assert 'libedgetpu' in str(exc) and 'apt-get install libedgetpu1-std' in str(exc)
        pytest.skip(f'no Edge TPU runtime here: {exc}')
    assert _agreement(seg, coral, 'cityscapes') >= 0.90


def test_static_batch_1_model_runs_a_batch_one_frame_after_another(coral):
    seg = _segmenter(PASCAL)
    bird = read_image(coral / 'bird_segmentation.bmp')
    street = read_image(coral / 'cityscapes_segmentation.bmp')
    alone = [seg(f).labels for f in (bird, street, bird)]
    runs = record_runs(seg)
    batch = seg.segment_batch([bird, street, bird])
    assert runs == [3]
    assert all(np.array_equal(r.labels, a) for r, a in zip(batch, alone))
