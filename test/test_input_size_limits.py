"""input_size has an upper bound in the node, the Segmenter, the card and the CLI, with one
clear error line."""

from conftest import DEFAULT_CARD
import cv2
import numpy as np
import pytest
import yaml

from pspnet_ros.core import ModelCard, ModelCardError, Segmenter
from pspnet_ros.node.config import NodeConfig
from pspnet_ros.node.parameters import defaults


def _params(**changes) -> dict:
    p = dict(defaults(), occupancy_regions=[])
    p.update(changes)
    return p


def test_node_refuses_a_huge_input_size():
    with pytest.raises(ValueError, match=r'input_size \(\[0, 0\] = the model card value\) must '
                                         r'be \[height, width\] with each side in 8\.\.4096, '
                                         r'got \[100000, 100000\]'):
        NodeConfig.from_parameters(_params(input_size=[100000, 100000]))


def test_segmenter_and_card_refuse_a_huge_input_size(tmp_path):
    with pytest.raises(ValueError, match=r'each side in 8\.\.4096, got \[100000, 100000\]'):
        Segmenter(DEFAULT_CARD, input_size=(100000, 100000))
    data = yaml.safe_load(DEFAULT_CARD.read_text())
    data['input_size'] = [100000, 100000]
    card = tmp_path / 'huge.yaml'
    card.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelCardError, match=r'each side in 8\.\.4096'):
        ModelCard.load(card)


def test_cli_reports_a_huge_card_input_size_as_an_error_line(tmp_path, capsys):
    # In-process: a traceback would be an exception escaping main().
    from pspnet_ros.cli import main
    data = yaml.safe_load(DEFAULT_CARD.read_text())
    data['input_size'] = [100000, 100000]
    data['weights'] = str(DEFAULT_CARD.with_suffix('.safetensors'))
    card = tmp_path / 'huge.yaml'
    card.write_text(yaml.safe_dump(data))
    img = tmp_path / 'frame.png'
    cv2.imwrite(str(img), np.zeros((40, 60, 3), np.uint8))
    try:
        code = main(['segment', str(img), '--model', str(card), '--out', str(tmp_path / 'out')])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert 'each side in 8..4096, got [100000, 100000]' in err
    assert 'Traceback' not in err
