"""The demo's synthetic labels, its expectations from the model card, the colour legend and the
captioned montage."""
import importlib.util

from conftest import ROOT
import cv2
import numpy as np

from pspnet_ros.core.labels import get_label_set
from pspnet_ros.evaluation.figures import BACKGROUND, caption_bar, legend_image, montage

CAMVID = get_label_set('camvid')


def _demo():
    spec = importlib.util.spec_from_file_location('demo', ROOT / 'scripts' / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_synthetic_frames_label_every_pixel_with_what_was_drawn(tmp_path):
    images, labels = _demo().synthetic_frames(tmp_path, 2)
    img = cv2.cvtColor(cv2.imread(str(images / 'synthetic_0001.png')), cv2.COLOR_BGR2RGB)
    lab = cv2.imread(str(labels / 'synthetic_0001.png'), cv2.IMREAD_UNCHANGED)
    ids = {n: i for i, n in enumerate(CAMVID.classes)}
    # The band right of the building, under the sky, is drawn as trees (it was left black and
    # labelled sky), and no pixel is left undrawn.
    assert (lab[110:200, 200:] == ids['tree']).all()
    assert img.reshape(-1, 3).max(axis=1).min() > 20
    # Each class's pixels have that region's colour (up to the added noise, sigma 6).
    colours = {'sky': (150, 170, 200), 'building': (120, 80, 70), 'tree': (60, 100, 45),
               'road': (90, 85, 95), 'pavement': (150, 140, 130), 'car': (40, 40, 160)}
    assert sorted(np.unique(lab).tolist()) == sorted(ids[n] for n in colours)
    for name, rgb in colours.items():
        mean = img[lab == ids[name]].mean(axis=0)
        assert np.abs(mean - rgb).max() < 2, name


def test_the_demo_expects_the_model_cards_figures():
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.files import default_card_path
    demo = _demo()
    metrics = ModelCard.load(default_card_path()).metrics
    rep = {'frames_dropped': 0, 'frames_sent': 30, 'latency_ms': {'p50': 40.0}}
    assert f'mIoU {metrics["demo"]["camvid_miou"]:.3f} (model card' in \
        demo.expectations(False, rep, 10.0)
    assert f'mIoU {metrics["demo"]["synthetic_miou"]:.3f} (model card' in \
        demo.expectations(True, rep, 10.0)
    assert f'all 101 give {metrics["val"]["miou"]}' in demo.expectations(False, rep, 10.0)


def test_legend_has_one_swatch_of_each_class_colour_and_void():
    img = legend_image(CAMVID.classes, CAMVID.palette_array(), width=480, ignore_index=11)
    assert img.shape[1] == 480 and img.dtype == np.uint8
    found = {tuple(int(v) for v in px) for px in img.reshape(-1, 3)}
    for colour in CAMVID.palette_array():
        assert tuple(int(v) for v in colour) in found
    assert (0, 0, 0) in found
    assert (img.shape[0] - 8) % 24 == 0                 # whole rows of 24 px cells
    assert img.shape[0] < 200                           # several classes to a row


def test_montage_has_a_caption_row_the_samples_and_the_legend(tmp_path):
    pal = CAMVID.palette_array()
    gt = np.zeros((30, 40), np.uint8)
    gt[15:] = 3
    img = np.full((30, 40, 3), 200, np.uint8)
    montage([(img, gt, gt), (img, None, gt)], pal, tmp_path / 'm.png', width=160,
            captions=('camera', 'truth', 'mask'), class_names=CAMVID.classes, ignore_index=11)
    out = cv2.cvtColor(cv2.imread(str(tmp_path / 'm.png')), cv2.COLOR_BGR2RGB)
    bar = caption_bar(('camera', 'truth', 'mask'), 160)
    legend = legend_image(CAMVID.classes, pal, 480, ignore_index=11)
    assert out.shape == (bar.shape[0] + 2 * 120 + legend.shape[0], 480, 3)
    assert (out[:bar.shape[0]] == bar).all()
    assert (out[-legend.shape[0]:] == legend).all()
    sample = out[bar.shape[0]:bar.shape[0] + 120]
    assert (sample[:60, 160:320] == pal[0]).all() and (sample[60:, 160:320] == pal[3]).all()
    second = out[bar.shape[0] + 120:bar.shape[0] + 240]
    assert (second[:, 160:320] == 0).all()            # no ground truth: a black tile
    assert (bar[:, :, 0] == BACKGROUND).mean() > 0.8   # mostly background, some text
