"""Every command in the command blocks of README.md and docs/*.md runs in a test.

``pspnet-ros`` commands run here, block by block in a scratch folder (``../shared`` and
``models/`` linked in, ``/tmp/`` paths moved into it). The others are listed in COVERED with
the test or make target that runs them, or carry a ``# needs: ...`` comment naming what
tests cannot provide (a ROS install, hardware, network, a quiet machine).
"""
from pathlib import Path
import re
import shlex
import subprocess
import sys

import pytest

from conftest import CAMVID, need, ROOT

DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
COMMAND_WORDS = ('pspnet-ros', 'make', 'ros2', 'colcon', 'rosdep', 'pip', 'python', 'git',
                 '.venv-export/bin/pspnet-ros', 'cd', 'mkdir', 'cp', 'ray', '.venv/bin/python')
# Commands run elsewhere: prefix -> where.
COVERED = {
    'make demo': 'test_doc_commands.py::test_the_demo_script_runs_end_to_end',
    'make test-export': '.ci/run',
    'make test-ros': '.ci/run',
    'make test': '.ci/run',
    'colcon build': 'make test-ros (scripts/colcon_test.sh)',
    'colcon test': 'make test-ros (scripts/colcon_test.sh)',
    'ros2 launch pspnet_ros segment.launch.py': 'test_ros_cli.py (make test-ros)',
    'ros2 lifecycle get': 'test_ros_cli.py (make test-ros)',
    'ros2 run pspnet_ros pspnet-ros': 'test_ros_cli.py (make test-ros)',
    'pspnet-ros export models/pspnet_mobilenetv2_camvid.yaml --format tflite':
        'test_parity.py / test_export.py (make test-export: litert-torch)',
    'pspnet-ros export models/pspnet_mobilenetv2_camvid.yaml --format edgetpu':
        'test_export.py (make test-export: litert-torch)',
    '.venv-export/bin/pspnet-ros export': 'test_parity.py (make test-export)',
    "pip install '.[ray]'": 'make test-ray (installs requirements-ray.txt)',
    'ray start': 'test_eval_ray_cluster.py (make test-ray: a two-node cluster on loopback)',
    'ray stop': 'test_eval_ray_cluster.py (make test-ray)',
}
# Options whose commands run in another suite.
COVERED_OPTIONS = {'--workers': 'test_eval_ray.py / test_eval_ray_cluster.py (make test-ray)'}


def commands(path: Path) -> list[tuple[int, str, str]]:
    """``(block number, command, needs)`` for each command line of each command block."""
    out, block, in_block, tag, needs = [], 0, False, '', ''
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('```'):
            in_block, tag, needs = not in_block, line[3:].strip(), ''
            block += in_block
            i += 1
            continue
        if not in_block or tag not in ('', 'bash', 'sh'):
            i += 1
            continue
        while line.endswith('\\') and i + 1 < len(lines):
            i += 1
            line = line[:-1] + ' ' + lines[i].strip()
        i += 1
        text = line.strip()
        if text.startswith('# needs:'):
            needs = text[len('# needs:'):].strip()      # for the rest of the block
            continue
        command, _, comment = text.partition(' # ')
        command = command.strip()
        own = comment.strip()[len('needs:'):].strip() if comment.strip().startswith(
            'needs:') else ''
        if not command or command.startswith('#'):
            continue
        first = command.split()[0]
        if tag == '' and first not in COMMAND_WORDS and not re.match(r'^[A-Z_]+=', first):
            continue            # a plain block of text (e.g. the layout tree)
        out.append((block, command, own or needs))
    return out


ALL = [(p.relative_to(ROOT).as_posix(), b, c, n) for p in DOCS for b, c, n in commands(p)]


# Benchmarks need a quiet machine (docs/RESULTS.md); tests never time anything.
BENCHMARK = re.compile(r'(^|/)(python\S*) scripts/(bench_\w+|soak)\.py')


def _covered(command: str) -> str:
    if BENCHMARK.search(command):
        return 'a benchmark: run on a quiet machine (docs/RESULTS.md), not in tests'
    words = command.split()
    return next((where for prefix, where in COVERED.items() if command.startswith(prefix)),
                next((where for opt, where in COVERED_OPTIONS.items() if opt in words), ''))


def _runs_here(command: str, needs: str) -> bool:
    return (not needs and not _covered(command) and command.startswith('pspnet-ros ')) or \
        command.startswith('. .venv/bin/activate') or re.match(r'^[A-Z_]+=', command) is not None


def test_every_documented_command_is_tested_or_says_what_it_needs():
    assert ALL, 'no command blocks found'
    orphans = [f'{doc}: {cmd}' for doc, _, cmd, needs in ALL
               if not (needs or _covered(cmd) or _runs_here(cmd, needs))]
    assert not orphans, ('commands no test runs; run them in test/test_doc_commands.py, list '
                         'them in COVERED, or mark them "# needs: <what>":\n'
                         + '\n'.join(orphans))


def _blocks_to_run():
    blocks = {}
    for doc, block, cmd, needs in ALL:
        if _runs_here(cmd, needs) and cmd.startswith('pspnet-ros '):
            blocks.setdefault((doc, block), []).append(cmd)
    return sorted(blocks.items())


@pytest.mark.slow
@pytest.mark.parametrize('where, cmds', _blocks_to_run(),
                         ids=[f'{d}#{b}' for (d, b), _ in _blocks_to_run()])
def test_documented_commands_run(tmp_path, where, cmds):
    need(CAMVID)
    work = tmp_path / 'work'
    work.mkdir()
    (tmp_path / 'shared').symlink_to(ROOT.parent / 'shared')      # ../shared from work/
    for name in ('models', 'config'):
        (work / name).symlink_to(ROOT / name)
    cli = f'{shlex.quote(sys.executable)} -m pspnet_ros.cli'
    for cmd in cmds:
        line = cli + cmd[len('pspnet-ros'):].replace(' /tmp/', f' {tmp_path}/')
        proc = subprocess.run(['bash', '-c', line], cwd=work, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f'{where}: {cmd}\n{proc.stdout}\n{proc.stderr}'
        assert 'Traceback' not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_demo_script_runs_end_to_end(tmp_path):
    # What `make demo` runs, on 5 frames (CamVid when ../shared has it, else synthetic).
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'demo.py'), '--frames', '5',
                           '--out', str(tmp_path / 'demo')], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'expected with config/segment.yaml' in proc.stdout
    import json

    def invalid(constant):
        raise AssertionError(f'demo_report.json holds {constant}: not JSON')
    rep = json.loads((tmp_path / 'demo' / 'demo_report.json').read_text(),
                     parse_constant=invalid)
    assert rep['frames_sent'] == 5
    assert [f['frame'] for f in rep['per_frame']] == [0, 1, 2, 3, 4]
    assert (tmp_path / 'demo' / 'montage.png').exists()


def test_the_demo_quotes_the_shipped_models_val_miou():
    # The demo's expectation line names the 101-frame val mIoU: it must follow the model card
    # when the default model changes (it once quoted the previous model's 0.619).
    import importlib.util
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.files import default_card_path
    spec = importlib.util.spec_from_file_location('demo', ROOT / 'scripts' / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    card = ModelCard.load(default_card_path())
    assert demo.EXPECTED_MIOU_CAMVID_ALL == card.metrics['val']['miou']


def test_the_colour_legend_in_ros_interface_is_the_label_sets_palette():
    # docs/ROS_INTERFACE.md's legend table must follow pspnet_ros.core.labels.
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.files import default_card_path
    from pspnet_ros.core.labels import get_label_set
    text = (ROOT / 'docs' / 'ROS_INTERFACE.md').read_text()
    rows = re.findall(r'^\| (\d+) \| `(\w+)` \| (\d+), (\d+), (\d+) \|$', text, re.M)
    labels = get_label_set(ModelCard.load(default_card_path()).label_set)
    assert [(int(i), name, (int(r), int(g), int(b))) for i, name, r, g, b in rows] == \
        [(i, name, tuple(c)) for i, (name, c) in enumerate(zip(labels.classes, labels.palette))]


def test_readme_and_results_stay_short():
    # README: what it is, install, run, interface (issue 35: under 10k characters); RESULTS:
    # current numbers only (under 25k); the journal lives in docs/history/.
    assert len((ROOT / 'README.md').read_text()) < 10_000
    assert len((ROOT / 'docs' / 'RESULTS.md').read_text()) < 25_000
