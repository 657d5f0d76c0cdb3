"""Node parameter parsing, without ROS (test_node_helpers_ros_free.py checks the imports)."""
from pathlib import Path

import pytest

from pspnet_ros.node.config import NodeConfig, parse_options, parse_regions, plan_workers
from pspnet_ros.node.parameters import defaults


def params(**over):
    p = defaults()
    p.update(over)
    return p


def test_backend_options_are_typed():
    assert parse_options(['channels_last=true', 'num_threads=2', 'scale=0.5', 'providers=CPU',
                          'fp16=False']) == {'channels_last': True, 'num_threads': 2,
                                             'scale': 0.5, 'providers': 'CPU', 'fp16': False}
    with pytest.raises(ValueError, match='channels_last=true'):
        parse_options(['channels_last'])


def test_regions_parse_and_reject_bad_boxes():
    assert parse_regions(['ahead:0.3,0.5,0.7,1.0']) == {'ahead': (0.3, 0.5, 0.7, 1.0)}
    for bad in ('ahead', 'ahead:0.3,0.5', 'ahead:0.7,0.5,0.3,1.0', 'a:0,0,1,2'):
        with pytest.raises(ValueError):
            parse_regions([bad])
    with pytest.raises(ValueError, match='twice'):
        parse_regions(['a:0,0,1,1', 'a:0,0,0.5,0.5'])


def test_config_from_default_parameters():
    cfg = NodeConfig.from_parameters(params(fallback_backends='onnxruntime, torch',
                                            backend_options=['channels_last=true']))
    assert cfg.fallback_backends == ('onnxruntime', 'torch')
    assert cfg.backend_options == {'channels_last': True}
    assert cfg.input_size is None and cfg.resize_mode is None and not cfg.test_time_flip
    seg, _ = NodeConfig.from_parameters(params(test_time_flip=True)).build_segmenter()
    assert seg.test_time_flip
    assert cfg.updated({'overlay_alpha': 0.2}).overlay_alpha == 0.2
    for bad in ({'input_transport': 'ffmpeg'}, {'image_qos': 'fast'},
                {'resize_mode': 'crop'}, {'input_size': [1, 2, 3]}):
        with pytest.raises(ValueError):
            NodeConfig.from_parameters(params(**bad))


def test_a_torch_fallback_after_torch_on_cuda_is_the_cpu_path():
    torch = pytest.importorskip('torch')
    if torch.cuda.is_available():
        pytest.skip('CUDA is available here: torch on cuda would not fail')
    cfg = NodeConfig.from_parameters(params(backend='torch', device='cuda',
                                            fallback_backends='torch',
                                            backend_options=['fp16=true', 'cuda_graphs=true']))
    seg, note = cfg.build_segmenter()
    assert (seg.backend.name, seg.backend.device) == ('torch', 'cpu')
    assert seg.backend.details['precision'] == 'fp32'    # fallbacks get no backend_options
    assert note.startswith("backend 'torch' unusable, fell back to 'torch' on cpu (torch: "
                           "device 'cuda' requested")
    # torch on the CPU failing at run time has nothing left to fall back to.
    assert cfg.fallback_segmenter('torch', RuntimeError('x'), 'cpu') == (None, '')
    seg, note = cfg.fallback_segmenter('torch', RuntimeError('CUDA error'), 'cuda')
    assert seg.backend.device == 'cpu' and 'CUDA error' in note


def test_a_fallback_chain_with_only_the_failed_cpu_backend_fails_clearly():
    cfg = NodeConfig.from_parameters(params(backend='edgetpu', fallback_backends='edgetpu'))
    with pytest.raises(RuntimeError, match='no backend could be loaded: edgetpu: '):
        cfg.build_segmenter()


def test_no_cameras_means_one_camera_on_todays_topics():
    cfg = NodeConfig.from_parameters(params(input_transport='compressed'))
    (cam,) = cfg.cameras
    assert not cfg.multi_camera and cam.name == '' and cam.input_transport == 'compressed'
    assert (cam.topic('image'), cam.topic('camera_info'), cam.output('mask')) == (
        'image', 'camera_info', '~/mask')


def test_named_cameras_take_node_wide_values_unless_overridden():
    cfg = NodeConfig.from_parameters(params(
        cameras=['front', 'rear'], use_camera_info=True, max_batch=2, sync_tolerance=0.01,
        **{'rear.input_transport': 'compressed', 'rear.use_camera_info': False,
           'front.qos_depth': None}))
    front, rear = cfg.cameras
    assert cfg.multi_camera and (cfg.max_batch, cfg.sync_tolerance) == (2, 0.01)
    assert (front.input_transport, front.use_camera_info, front.qos_depth) == ('raw', True, 2)
    assert (rear.input_transport, rear.use_camera_info) == ('compressed', False)
    assert (front.topic('image/compressed'), front.output('occupancy')) == (
        'front/image/compressed', '~/front/occupancy')


@pytest.mark.parametrize('over,match', [
    ({'cameras': ['front', 'front']}, "'front' appears twice"),
    ({'cameras': ['front/left']}, 'must start with a letter'),
    ({'cameras': ['model']}, "camera name 'model' is also a node parameter"),
    ({'cameras': ['a'], 'a.input_transport': 'h264'}, 'a.input_transport must be raw or'),
    ({'cameras': ['a'], 'a.qos_depth': 0}, r'a.qos_depth must be 1..100, got 0'),
    ({'max_batch': 0}, r'max_batch must be 1..64, got 0'),
    ({'sync_tolerance': -0.1}, r'sync_tolerance \(-0.1\)'),
])
def test_bad_camera_settings_are_refused_with_the_reason(over, match):
    with pytest.raises(ValueError, match=match):
        NodeConfig.from_parameters(params(**over))


class _Seg:
    """What ``plan_workers`` reads of a Segmenter: its backend's name and device."""

    def __init__(self, name, device='cpu'):
        self.backend = type('B', (), {'name': name, 'device': device})()


@pytest.mark.parametrize('over, backend, threads, expect', [
    # auto: one worker per camera on torch CPU, at most one per CPU thread
    ({}, 'torch', 2, (1, 0, '')),
    ({'cameras': ['a', 'b', 'c', 'd']}, 'torch', 2, (2, 1, '')),
    ({'cameras': ['a', 'b', 'c', 'd']}, 'torch', 8, (4, 2, '')),
    ({'cameras': ['a', 'b']}, 'tflite', 2, (2, 1, '')),        # an interpreter per worker
    ({'cameras': ['a', 'b']}, 'onnxruntime', 2, (1, 0, '')),
    ({'cameras': ['a', 'b']}, 'edgetpu', 2, (1, 0, '')),
    ({'cameras': ['a', 'b'], 'sync_tolerance': 0.02}, 'torch', 2, (1, 0, '')),
    # explicit
    ({'cameras': ['a', 'b', 'c'], 'inference_workers': 1}, 'torch', 2, (1, 0, '')),
    ({'cameras': ['a', 'b', 'c'], 'inference_workers': 3}, 'torch', 2, (3, 1, '')),
    ({'cameras': ['a', 'b'], 'inference_workers': 4}, 'torch', 4,
     (2, 2, 'inference_workers 4: 2 workers, a camera is never in two workers at once')),
    ({'inference_workers': 2}, 'torch', 2,
     (1, 0, 'inference_workers 2: 1 worker, a camera is never in two workers at once')),
    ({'cameras': ['a', 'b'], 'inference_workers': 2}, 'edgetpu', 2,
     (1, 0, 'inference_workers 2: 1 worker, backend edgetpu on cpu runs one batch at a time '
            '(only torch and TFLite on CPU run batches side by side)')),
    ({'cameras': ['a', 'b'], 'inference_workers': 2}, 'tflite', 2, (2, 1, '')),
    ({'cameras': ['a', 'b'], 'inference_workers': 2, 'sync_tolerance': 0.02}, 'torch', 2,
     (1, 0, 'inference_workers 2: 1 worker, synchronised sets (sync_tolerance > 0) run one at '
            'a time')),
])
def test_inference_workers_follow_cameras_backend_and_threads(over, backend, threads, expect):
    cfg = NodeConfig.from_parameters(params(**over))
    assert plan_workers(cfg, _Seg(backend), threads) == expect


def test_torch_on_cuda_runs_one_batch_at_a_time():
    cfg = NodeConfig.from_parameters(params(cameras=['a', 'b']))
    assert plan_workers(cfg, _Seg('torch', 'cuda:0'), 2) == (1, 0, '')
    with pytest.raises(ValueError, match='inference_workers must be 0..64'):
        NodeConfig.from_parameters(params(inference_workers=65))


def test_named_backends_run_the_shipped_exports_when_model_is_empty():
    from pspnet_ros.core.backends import BackendError
    models = Path(__file__).resolve().parents[1] / 'models'
    cards = {b: NodeConfig.from_parameters(params(backend=b)).card_for(b)
             for b in ('torch', 'auto', 'onnxruntime', 'tflite')}
    assert cards == {'torch': models / 'pspnet_mobilenetv2_camvid.yaml',
                     'auto': models / 'pspnet_mobilenetv2_camvid.yaml',
                     'onnxruntime': models / 'pspnet_mobilenetv2_camvid.onnx.yaml',
                     'tflite': models / 'pspnet_mobilenetv2_camvid_int8.tflite.yaml'}
    mine = NodeConfig.from_parameters(params(backend='onnxruntime', model='my.onnx.yaml'))
    assert mine.card_for('onnxruntime') == 'my.onnx.yaml'
    # No Edge TPU compilation is shipped: one line that says what to make.
    with pytest.raises(BackendError) as err:
        NodeConfig.from_parameters(params(backend='edgetpu')).build_segmenter()
    assert str(err.value) == (
        'no edgetpu export of pspnet_mobilenetv2_camvid next to its card (looked for '
        'pspnet_mobilenetv2_camvid_int8_edgetpu.tflite.yaml); make one with '
        '`pspnet-ros export CARD --format edgetpu --out DIR`')


def test_the_onnxruntime_backend_with_no_model_runs_the_onnx_export():
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    seg, note = NodeConfig.from_parameters(params(backend='onnxruntime')).build_segmenter()
    assert (seg.backend.name, seg.card.name, note) == (
        'onnxruntime', 'pspnet_mobilenetv2_camvid_onnx', '')
