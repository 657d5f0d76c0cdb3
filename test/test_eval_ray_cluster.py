"""``eval --ray-address`` joins a two-node Ray cluster started on this machine (loopback)."""
import importlib.util
import json
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

# A marker, not importorskip: a module-level skip raised while the launch_testing plugin
# imports the module during collection ends the whole colcon test session.
pytestmark = pytest.mark.skipif(importlib.util.find_spec('ray') is None,
                                reason="Ray is optional: pip install '.[ray]' (make test-ray)")

from pspnet_ros.evaluation.shards import make_evaluator  # noqa: E402
from test_eval_shards import assert_same_report, camvid_labels, write_pred_bag  # noqa: E402
from test_eval_ray import pred_cfg  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def ray_cmd(*args, env):
    return subprocess.run([str(BIN / 'ray'), *args], env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.fixture(scope='module')
def two_nodes():
    """A head node and a second node, one CPU each, both on 127.0.0.1; stopped at the end."""
    temp = tempfile.mkdtemp(prefix='ray', dir='/tmp')  # short: Ray's socket paths are limited
    port = free_port()
    # Ray 2.60 clusters use token authentication (the token is in ~/.ray/auth_token).
    env = dict(os.environ, RAY_AUTH_MODE='token', RAY_USAGE_STATS_ENABLED='0')
    try:
        head = ray_cmd('start', '--head', '--node-ip-address', '127.0.0.1', '--port', str(port),
                       '--num-cpus', '1', '--num-gpus', '0', '--include-dashboard', 'false',
                       '--temp-dir', temp, '--disable-usage-stats', env=env)
        assert head.returncode == 0, head.stderr[-2000:]
        node = ray_cmd('start', '--address', f'127.0.0.1:{port}', '--node-ip-address',
                       '127.0.0.1', '--num-cpus', '1', '--num-gpus', '0',
                       '--disable-usage-stats', env=env)
        assert node.returncode == 0, node.stderr[-2000:]
        yield f'127.0.0.1:{port}', env
    finally:
        stop_cluster(temp)


def stop_cluster(temp: str) -> None:
    """End this cluster's processes only: those whose command line names its temp folder and
    their descendants (agents rename themselves). ``ray stop`` would end every Ray instance on
    the machine."""
    def ours():
        found, parent = set(), {}
        for d in Path('/proc').iterdir():
            if not d.name.isdigit():
                continue
            try:
                if temp.encode() in (d / 'cmdline').read_bytes():
                    found.add(int(d.name))
                stat = (d / 'stat').read_text()
                parent[int(d.name)] = int(stat.rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
        grew = True
        while grew:
            new = {p for p, pp in parent.items() if pp in found} - found
            found |= new
            grew = bool(new)
        return sorted(p for p in found if _alive(p))
    pids = ours()     # all at once: children of a stopped raylet lose their parent
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = [p for p in pids if _alive(p)] + ours()
    assert not left, f'Ray processes of {temp} still running: {left}'
    shutil.rmtree(temp, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running (not a zombie waiting to be reaped)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def test_ray_address_spreads_workers_over_both_nodes(two_nodes, tmp_path):
    address, env = two_nodes
    bags = [write_pred_bag(tmp_path / f'p{i}', camvid_labels(7 * i, 5)) for i in range(4)]
    out = tmp_path / 'ray'
    proc = subprocess.run(
        [str(BIN / 'pspnet-ros'), 'eval', *map(str, bags), '--pred-topic', '/pred',
         '--label-topic', '/camera/labels', '--label-set', 'camvid', '--workers', '2',
         '--ray-address', address, '--no-progress', '--out', str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '4 shards on 2 Ray workers (2 node(s)), 0 retried, 0 failed' in proc.stdout
    report = json.loads((out / 'report.json').read_text())
    assert report['fleet']['ray_address'] == address
    assert len({s['node'] for s in report['fleet']['shards']}) == 2
    make_evaluator(pred_cfg(bags, tmp_path / 'seq'), label_set='camvid').run()
    seq = json.loads((tmp_path / 'seq' / 'report.json').read_text())
    assert_same_report(report, seq)
