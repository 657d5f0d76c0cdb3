"""Review faults without ROS: input_size bounds, decoder chatter, backend_options defaults and
options of other backends (issue 10, section 3: faults 3, 5, 6, 7)."""

from conftest import DEFAULT_CARD, ROOT
import cv2
import numpy as np
import pytest
import yaml

from pspnet_ros.core import ModelCard, ModelCardError, Segmenter
from pspnet_ros.core.image import ImageError
from pspnet_ros.core.rosimage import compressed_to_rgb
from pspnet_ros.node.config import NodeConfig
from pspnet_ros.node.parameters import defaults

PASCAL = ROOT / 'models' / 'third_party' / 'coral_deeplabv3_mnv2_pascal.yaml'


def _params(**changes) -> dict:
    p = dict(defaults(), occupancy_regions=[])
    p.update(changes)
    return p


# -- fault 3: input_size has an upper bound, with a clear error ------------------------------
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


# -- fault 5: decoder messages do not go to stderr ---------------------------------------------
def _jpeg() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    return cv2.imencode('.jpg', img)[1].tobytes()


def test_a_damaged_jpeg_decodes_and_its_decoder_message_is_returned_not_printed(capfd):
    data = bytearray(_jpeg())
    mid = len(data) // 2
    data[mid:mid + 50] = b'\xff' * 50          # libjpeg: "premature end of data segment"
    said = []
    rgb = compressed_to_rgb('jpeg', bytes(data), warnings=said)
    assert rgb.shape == (120, 160, 3)
    assert said == ['Corrupt JPEG data: premature end of data segment']
    # The structure check finds the damage without touching stderr (issue 34: no fd-2
    # redirection); libjpeg itself still prints its first warning, one line per frame.
    assert capfd.readouterr().err in ('', 'Corrupt JPEG data: premature end of data segment\n')


def test_an_undecodable_png_names_the_decoder_message_in_the_error(capfd):
    png = bytearray(cv2.imencode('.png', np.zeros((40, 60, 3), np.uint8))[1].tobytes())
    png[60] ^= 0xff                            # damages the compressed pixel data
    with pytest.raises(ImageError, match=r'could not decode the 60x40 image; the data is '
                                         r'truncated or corrupt \(IDAT: '
                                         r'incorrect data check\)'):
        compressed_to_rgb('png', bytes(png))
    assert capfd.readouterr().err == ''


def test_decoding_never_redirects_stderr(monkeypatch):
    import os

    def refuse(*args):
        raise AssertionError('os.dup2 called while decoding')
    damaged = bytearray(_jpeg())
    damaged[len(damaged) // 2:len(damaged) // 2 + 50] = b'\xff' * 50
    clean, bad = [], []
    with monkeypatch.context() as patch:
        patch.setattr(os, 'dup2', refuse)
        compressed_to_rgb('jpeg', _jpeg(), warnings=clean)
        compressed_to_rgb('jpeg', bytes(damaged), warnings=bad)
    assert clean == [] and bad == ['Corrupt JPEG data: premature end of data segment']


# -- fault 6: one source of defaults for backend_options ---------------------------------------
def test_torch_runs_channels_last_without_any_backend_options():
    cfg = NodeConfig.from_parameters(_params())
    seg, note = cfg.build_segmenter()
    assert note == '' and seg.backend.details['channels_last'] is True


def test_the_parameter_file_does_not_restate_backend_defaults():
    params = yaml.safe_load((ROOT / 'config' / 'segment.yaml').read_text())['/**'][
        'ros__parameters']
    assert params['backend_options'] == []


# -- fault 7: options of other backends are dropped with a note --------------------------------
def test_torch_options_are_dropped_with_a_note_for_tflite():
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    if not ModelCard.load(PASCAL).weights_path.is_file():
        pytest.skip('shared Coral models are not present')
    cfg = NodeConfig.from_parameters(_params(
        model=str(PASCAL), backend='tflite', fallback_backends='torch',
        backend_options=['channels_last=true', 'fp16=false']))
    assert cfg.options_for('tflite') == (
        {}, "backend options ['channels_last', 'fp16'] do not apply to backend tflite; ignored")
    seg, note = cfg.build_segmenter()
    assert seg.backend.name == 'tflite' and note == ''


def test_an_option_no_backend_knows_is_refused():
    with pytest.raises(ValueError, match=r"unknown backend option\(s\) \['channel_last'\] for "
                                         r'backend torch; it takes \[.*channels_last'):
        NodeConfig.from_parameters(_params(backend_options=['channel_last=true']))
