"""The node's one parameter schema against the shipped YAML profiles (no ROS needed)."""
from pathlib import Path

import pytest
import yaml

from conftest import modules_loaded_by
from pspnet_ros.core.image import DEFAULT_MAX_PIXELS
from pspnet_ros.node.config import NodeConfig
from pspnet_ros.node.parameters import (CAMERA_OVERRIDES, DEFAULTS, defaults, matches,
                                        override_of, PARAMETERS, READ_ONLY_AFTER_CONFIGURE,
                                        refusal)

CONFIG = Path(__file__).resolve().parents[1] / 'config'


def _profile(name: str) -> dict:
    return yaml.safe_load((CONFIG / name).read_text())['/**']['ros__parameters']


def test_segment_yaml_states_every_parameter_with_the_schema_type_and_default():
    full = _profile('segment.yaml')
    assert list(full) == list(PARAMETERS), 'segment.yaml must list every parameter, in order'
    for name, value in full.items():
        assert matches(PARAMETERS[name], value), (name, value, PARAMETERS[name].kind)
        assert value == DEFAULTS[name], f'segment.yaml {name}: {value!r} != {DEFAULTS[name]!r}'


@pytest.mark.parametrize('profile', sorted(p.name for p in CONFIG.glob('*.yaml')))
def test_every_yaml_profile_sets_only_declared_parameters_of_their_type(profile):
    params = dict(_profile(profile))
    # Per-camera overrides: a mapping under each name of "cameras".
    for cam in params.get('cameras') or []:
        block = params.pop(cam, {})
        assert set(block) <= set(CAMERA_OVERRIDES), f'{profile}: {cam}'
        for key, value in block.items():
            assert matches(PARAMETERS[key], value), f'{profile}: {cam}.{key} = {value!r}'
    unknown = set(params) - set(PARAMETERS)
    assert not unknown, f'{profile}: unknown parameters {unknown}'
    for name, value in params.items():
        assert matches(PARAMETERS[name], value), f'{profile}: {name} = {value!r}'


def test_types_are_exact_as_a_ros_parameter_needs():
    assert matches(PARAMETERS['overlay_alpha'], 0.5)
    assert not matches(PARAMETERS['overlay_alpha'], 1)          # INTEGER is not DOUBLE
    assert not matches(PARAMETERS['qos_depth'], True)
    assert not matches(PARAMETERS['cpu_affinity'], ['0'])
    assert matches(PARAMETERS['cpu_affinity'], [0, 1])


def test_one_pixel_limit_and_defaults_from_the_schema():
    assert DEFAULTS['max_image_pixels'] == DEFAULT_MAX_PIXELS
    cfg = NodeConfig.from_parameters({})          # every parameter left out: the defaults
    assert cfg.max_image_pixels == DEFAULT_MAX_PIXELS
    assert (cfg.backend, cfg.auto_budget_s, cfg.device, cfg.max_batch, cfg.overlay_alpha) == (
        'auto', 10.0, 'cpu', 4, 0.5)
    assert cfg.regions == {'ahead': (0.3, 0.5, 0.7, 1.0)}
    (cam,) = cfg.cameras
    assert (cam.input_transport, cam.image_qos, cam.qos_depth, cam.use_camera_info) == (
        'raw', 'sensor_data', 2, False)
    # Node-wide copies of the per-camera transport settings are gone: only cameras hold them.
    for key in CAMERA_OVERRIDES:
        assert not hasattr(cfg, key), key
    fresh = defaults()
    fresh['occupancy_regions'].append('x:0,0,1,1')
    assert DEFAULTS['occupancy_regions'] == ['ahead:0.3,0.5,0.7,1.0']


def test_read_only_set_and_camera_overrides_come_from_the_schema():
    assert CAMERA_OVERRIDES == ('input_transport', 'image_qos', 'qos_depth', 'use_camera_info')
    assert {'model', 'backend', 'cameras', 'input_transport'} <= READ_ONLY_AFTER_CONFIGURE
    assert not {'overlay_alpha', 'occupancy_regions', 'max_image_pixels',
                'publish_overlay'} & READ_ONLY_AFTER_CONFIGURE
    assert override_of('front.qos_depth') == 'qos_depth'
    assert override_of('qos_depth') == '' and override_of('front.model') == ''
    assert refusal(['overlay_alpha', 'front.image_qos'], configured=True) == (
        'front.image_qos is read-only while configured; deactivate and clean up the node, '
        'change it, then configure again')
    assert refusal(['overlay_alpha'], configured=True) == ''
    assert refusal(['model'], configured=False) == ''


def test_the_schema_imports_no_ros():
    assert modules_loaded_by('import pspnet_ros.node.parameters, pspnet_ros.node.config',
                             ('rclpy', 'rcl_interfaces', 'torch')) == []
