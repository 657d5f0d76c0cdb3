"""Training on your own classes needs no code change (issue 38 item 2): a class list from a
file (YAML or a labelling tool's labelmap.txt), colour label PNGs mapped through it, the card
embedding it, and the node publishing those names in ~/label_info."""
import json

import cv2
import numpy as np
import pytest

from pspnet_ros.core import ModelCard, Segmenter
from pspnet_ros.core.labels import get_label_set, read_labelmap

CLASSES_YAML = """name: warehouse
ignore_index: 255
ignore_color: [0, 0, 0]
classes:
  - {name: floor, color: [90, 90, 90]}
  - {name: wall, color: [220, 200, 160]}
  - {name: pallet, color: [200, 30, 30]}
"""


def test_a_yaml_class_list_and_a_labelmap_give_the_same_label_set(tmp_path):
    (tmp_path / 'classes.yaml').write_text(CLASSES_YAML)
    (tmp_path / 'labelmap.txt').write_text('# label:color_rgb:parts:actions\n'
                                           'floor:90,90,90::\nwall:220,200,160::\n'
                                           'pallet:200,30,30::\nignore:0,0,0::\n')
    a = get_label_set(str(tmp_path / 'classes.yaml'))
    b = read_labelmap(tmp_path / 'labelmap.txt')
    assert a.name == 'warehouse' and b.name == 'labelmap'
    for ls in (a, b):
        assert ls.classes == ('floor', 'wall', 'pallet')
        assert ls.palette == ((90, 90, 90), (220, 200, 160), (200, 30, 30))
        assert (ls.ignore_index, ls.ignore_colour) == (255, (0, 0, 0))
    # The card embeds the list; get_label_set reads it back without the file.
    assert get_label_set(a.to_dict()) == a


def test_colour_labels_map_to_ids_and_an_unknown_colour_is_named(tmp_path):
    (tmp_path / 'classes.yaml').write_text(CLASSES_YAML)
    ls = get_label_set(str(tmp_path / 'classes.yaml'))
    rgb = np.array([[[90, 90, 90], [200, 30, 30]], [[0, 0, 0], [220, 200, 160]]], np.uint8)
    assert ls.colours_to_ids(rgb).tolist() == [[0, 2], [255, 1]]
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(ValueError, match=r'colours \(1, 2, 3\) are not in label set warehouse'):
        ls.colours_to_ids(rgb)
    with pytest.raises(ValueError, match=r"unknown keys \['colour_map'\]"):
        get_label_set({'name': 'x', 'classes': [], 'colour_map': 1})
    with pytest.raises(FileNotFoundError, match='label set file not found'):
        get_label_set(str(tmp_path / 'none.yaml'))
    with pytest.raises(ValueError, match='class names repeat'):
        get_label_set({'name': 'x', 'classes': [
            {'name': 'a', 'color': [1, 1, 1]}, {'name': 'a', 'color': [2, 2, 2]}]})


def make_dataset(root, frames: int = 6):
    """``frames`` synthetic 64x80 frames of a wall over a floor with a pallet somewhere, and
    their colour label PNGs (as a labelling tool exports them)."""
    rng = np.random.default_rng(0)
    ls_colours = {'floor': (90, 90, 90), 'wall': (220, 200, 160), 'pallet': (200, 30, 30)}
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    for i in range(frames):
        lab = np.zeros((64, 80, 3), np.uint8)
        img = np.zeros((64, 80, 3), np.uint8)
        horizon = 24 + i * 2
        lab[:horizon], img[:horizon] = ls_colours['wall'], (200, 190, 150)
        lab[horizon:], img[horizon:] = ls_colours['floor'], (60, 70, 80)
        x, y = 8 + 9 * i, horizon + 6
        lab[y:y + 14, x:x + 18], img[y:y + 14, x:x + 18] = ls_colours['pallet'], (150, 90, 40)
        lab[0, :4] = 0                                      # a few void (black) pixels
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / 'images' / f'f{i:02d}.png'), img[:, :, ::-1])
        cv2.imwrite(str(root / 'labels' / f'f{i:02d}.png'), lab[:, :, ::-1])


def train_tiny(tmp_path):
    from pspnet_ros.cli import main
    make_dataset(tmp_path / 'data')
    (tmp_path / 'classes.yaml').write_text(CLASSES_YAML)
    (tmp_path / 'recipe.yaml').write_text(
        f'train_images: {tmp_path}/data/images\ntrain_labels: {tmp_path}/data/labels\n'
        f'val_images: {tmp_path}/data/images\nval_labels: {tmp_path}/data/labels\n'
        f'label_set: {tmp_path}/classes.yaml\nname: warehouse\n'
        'input_size: [65, 81]\ncrop_size: [57, 73]\nhead_channels: 16\nbatch_size: 2\n'
        'epochs: 2\nthreads: 1\neval_every: 2\nclass_weighting: none\n'
        'licence: proprietary\ntraining_data: six synthetic warehouse frames\n')
    assert main(['train', '--config', str(tmp_path / 'recipe.yaml'), '--out',
                 str(tmp_path / 'out'), '--no-progress']) == 0
    return tmp_path / 'out' / 'warehouse.yaml'


def test_training_on_own_classes_embeds_them_in_the_card(tmp_path, capsys):
    card_path = train_tiny(tmp_path)
    card = ModelCard.load(card_path)
    assert card.label_set['name'] == 'warehouse' and card.num_classes == 3
    assert [c['name'] for c in card.label_set['classes']] == ['floor', 'wall', 'pallet']
    assert (card.licence, card.training_data) == ('proprietary',
                                                  'six synthetic warehouse frames')
    assert card.reproduce == (f'pspnet-ros train --config {tmp_path}/recipe.yaml '
                              '--out train_out')
    assert card.metrics['val']['images'] == 6
    assert set(card.metrics['val']['iou']) == {'floor', 'wall', 'pallet'}
    seg = Segmenter(card_path)
    assert seg.class_names == ('floor', 'wall', 'pallet')
    assert seg.palette.tolist() == [[90, 90, 90], [220, 200, 160], [200, 30, 30]]


@pytest.mark.ros
def test_the_node_publishes_the_own_class_names_in_label_info(tmp_path, rclpy_context):
    from ros_fixtures import NodeUnderTest
    card_path = train_tiny(tmp_path)
    node = NodeUnderTest(tmp_path, ros_args=['-p', f'model:={card_path}'])
    try:
        info = node.client.label_info
        assert info['label_set'] == 'warehouse' and info['ignore_index'] == 255
        assert [(c['id'], c['name'], c['color']) for c in info['classes']] == [
            (0, 'floor', [90, 90, 90]), (1, 'wall', [220, 200, 160]),
            (2, 'pallet', [200, 30, 30])]
        assert json.loads(json.dumps(info)) == info
    finally:
        assert node.close() == 0


def test_colour_labels_convert_to_id_pngs_for_the_evaluation_tools(tmp_path):
    from pspnet_ros.core.image import read_label
    from pspnet_ros.training.colour_labels import main
    make_dataset(tmp_path / 'data', frames=2)
    (tmp_path / 'classes.yaml').write_text(CLASSES_YAML)
    assert main(['--label-set', str(tmp_path / 'classes.yaml'), str(tmp_path / 'data/labels'),
                 str(tmp_path / 'ids')]) == 0
    ids = read_label(tmp_path / 'ids' / 'f01.png')
    assert ids.dtype == np.uint8 and ids.shape == (64, 80)
    assert ids[0, 0] == 255 and ids[10, 40] == 1 and ids[63, 0] == 0    # void, wall, floor
    assert ids[26 + 6 + 3, 17 + 3] == 2                                  # the pallet
