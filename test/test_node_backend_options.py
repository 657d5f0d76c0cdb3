"""backend_options in the node: one source of defaults, options of other backends dropped with
a note, unknown options refused."""

from conftest import ROOT
import pytest
import yaml

from pspnet_ros.core import ModelCard
from pspnet_ros.node.config import NodeConfig
from pspnet_ros.node.parameters import defaults

PASCAL = ROOT / 'models' / 'third_party' / 'coral_deeplabv3_mnv2_pascal.yaml'


def _params(**changes) -> dict:
    p = dict(defaults(), occupancy_regions=[])
    p.update(changes)
    return p


def test_torch_runs_channels_last_without_any_backend_options():
    cfg = NodeConfig.from_parameters(_params(backend='torch'))
    seg, note = cfg.build_segmenter()
    assert note == '' and seg.backend.details['channels_last'] is True


def test_the_parameter_file_does_not_restate_backend_defaults():
    params = yaml.safe_load((ROOT / 'config' / 'segment.yaml').read_text())['/**'][
        'ros__parameters']
    assert params['backend_options'] == []


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
        NodeConfig.from_parameters(_params(backend='torch',
                                           backend_options=['channel_last=true']))
