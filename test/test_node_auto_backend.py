"""backend auto in the node: measured at configure, cached for the next start, shown in the log
and /diagnostics; an explicit backend or explicit options are never replaced."""
import json
import os
import signal
import time

import numpy as np
import pytest
from ros_fixtures import NodeUnderTest

from pspnet_ros.core.backends.autoselect import default_cache_dir
from pspnet_ros.node.config import NodeConfig
from pspnet_ros.node.diagnostics import model_values, ModelSnapshot
from pspnet_ros.node.parameters import defaults

BUDGET = 3.0      # seconds: the torch candidates at least, on a busy 2-core machine


def _cfg(**changes) -> NodeConfig:
    return NodeConfig.from_parameters({**defaults(), 'occupancy_regions': [], **changes})


def _frame() -> np.ndarray:
    img = np.zeros((360, 480, 3), np.uint8)
    img[:150] = (140, 160, 200)
    img[150:] = (90, 80, 90)
    return img


def _run(tmp, stamp: int) -> tuple[dict, str]:
    """Start a node with backend auto, send one frame, return its diagnostics and log."""
    n = NodeUnderTest(tmp, ros_args=['-p', 'backend:=auto', '-p', f'auto_budget_s:={BUDGET}'],
                      client_kwargs={'outputs': ('mask',)})
    try:
        assert n.send_and_wait(n.client.make_image(_frame(), stamp))
        v = n.latest_diag(lambda v: 'backend_choice' in v)
    finally:
        assert n.close() == 0
    return v, n.log.read_text()


@pytest.mark.ros
def test_a_real_configure_measures_then_the_next_start_reuses_the_cache(tmp_path, monkeypatch):
    pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
    monkeypatch.setenv('ROS_HOME', str(tmp_path / 'ros_home'))    # the node inherits it
    cache = default_cache_dir()
    assert cache == tmp_path / 'ros_home' / 'pspnet_ros' / 'auto_backend'
    first, log = _run(tmp_path, 1_000_000_001)
    assert first['backend_choice'] == 'measured', first
    chosen = first['auto.chosen']
    assert chosen.split()[0] == first['backend'], first
    times = {k[len('auto.'):]: val for k, val in first.items()
             if k.startswith('auto.') and k != 'auto.chosen'}
    # Both torch layouts are timed first; every candidate shows a time or why it has none.
    for label in ('torch channels_last=False', 'torch channels_last=True'):
        assert times[label].endswith(' ms'), times
    assert times[chosen].endswith(' ms')
    assert f'auto chose {chosen} (measured: torch channels_last=False ' in log, log
    (saved,) = [p for p in cache.glob('*.json')]
    assert json.loads(saved.read_text())['label'] == chosen
    stamp = saved.stat().st_mtime_ns

    second, log = _run(tmp_path, 1_000_000_002)
    assert (second['backend_choice'], second['auto.chosen'], second['backend']) == (
        'cached', chosen, first['backend'])
    assert {k: v for k, v in second.items() if k.startswith('auto.')} == {
        k: v for k, v in first.items() if k.startswith('auto.')}
    assert f'auto chose {chosen} (cached: ' in log, log
    assert saved.stat().st_mtime_ns == stamp and len(list(cache.glob('*.json'))) == 1


def _seed(cache) -> None:
    """A cache in which a fake measurement (every candidate 0 s: the first listed wins)
    made torch channels_last=False the choice."""
    from pspnet_ros.core.backends import autoselect

    class Fake:
        def run(self, batch):
            pass
    card = _cfg().card_for('auto')
    from pspnet_ros.core import ModelCard
    sel = autoselect.select(ModelCard.load(card), budget_s=5.0, cache_dir=cache,
                            clock=lambda: 0.0, build=lambda name, c, device, **o: Fake())
    assert sel is not None and not sel.from_cache


def test_an_explicit_backend_or_explicit_options_are_never_measured_or_replaced(
        tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_HOME', str(tmp_path))
    _seed(default_cache_dir())
    cached = _cfg().auto_choice()[0]                    # auto reads the seeded choice
    assert (cached.from_cache, cached.label) == (True, 'torch channels_last=False')
    # torch named: its own defaults (channels_last), not the cached auto choice.
    cfg = _cfg(backend='torch')
    choice, why = cfg.auto_choice()
    assert (choice, why) == (None, '')
    seg, note = cfg.build_segmenter(choice)
    assert (seg.backend.name, seg.backend.details['channels_last'], note) == ('torch', True, '')
    assert _cfg(backend_options=['channels_last=false']).auto_choice() == (
        None, 'backend_options are given: the fixed chain with them, no measuring')
    assert _cfg(auto_budget_s=0.0).auto_choice() == (
        None, 'auto_budget_s is 0: the fixed chain, no measuring')
    assert len(os.listdir(default_cache_dir())) == 1     # nothing measured or written again


def test_diagnostics_say_how_the_backend_was_chosen():
    from pspnet_ros.core.backends.autoselect import Measurement, Selection
    sel = Selection('tflite', {'num_threads': 2}, 'x.yaml', 'tflite num_threads=2',
                    [Measurement('torch channels_last=False', 0.1084, 0.7093),
                     Measurement('tflite num_threads=2', 0.0702, 0.7075),
                     Measurement('onnxruntime num_threads=1', None, None,
                                 'not measured: budget of 10 s spent')], from_cache=True)
    vals = model_values(ModelSnapshot(backend='tflite', device='cpu', model='m',
                                      choice=sel.values()))
    assert {k: v for k, v in vals.items() if k.startswith(('backend', 'auto.'))} == {
        'backend': 'tflite', 'backend_choice': 'cached', 'auto.chosen': 'tflite num_threads=2',
        'auto.torch channels_last=False': '108.4 ms', 'auto.tflite num_threads=2': '70.2 ms',
        'auto.onnxruntime num_threads=1': 'not measured: budget of 10 s spent'}


@pytest.mark.ros
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_auto_measures_ends_the_node_at_once_and_caches_nothing(tmp_path, sig):
    pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
    from pspnet_ros.live import start_node
    from ros_fixtures import DOMAIN, PARAMS
    log = tmp_path / 'node.log'
    env = {**os.environ, 'ROS_HOME': str(tmp_path / 'ros_home')}
    proc = start_node(PARAMS, DOMAIN, ['-p', 'backend:=auto', '-p', 'auto_budget_s:=120.0'],
                      log, env=env)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and 'backend auto: timing the candidates' not in (
                log.read_text() if log.exists() else ''):
            time.sleep(0.05)
        time.sleep(1.0)           # into the measuring (each candidate takes about a second)
        assert 'configured:' not in log.read_text()
        proc.send_signal(sig)
        t0 = time.monotonic()
        code = proc.wait(60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    for bad in ('Traceback', 'Exception ignored', '[ERROR]'):
        assert bad not in text, text
    assert took < 10, f'{took:.1f} s to end (the budget was 120 s)'
    assert not list((tmp_path / 'ros_home').glob('pspnet_ros/auto_backend/*.json'))
