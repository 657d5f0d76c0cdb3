"""``pspnet-ros segment`` and ``train`` end to end on real files."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import DEFAULT_CARD, modules_loaded_by
from pspnet_ros.core import ModelCard


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'pspnet_ros.cli', *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow          # the console entry point in a process of its own, the real model
def test_segment_writes_three_pngs_and_prints_occupancy(camvid, tmp_path):
    img = camvid / 'val' / '0016E5_07965.png'
    proc = run_cli('segment', img, '--out', tmp_path, '--json')
    assert proc.returncode == 0, proc.stderr
    mask = cv2.imread(str(tmp_path / '0016E5_07965_mask.png'), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (360, 480) and mask.max() < 11
    for suffix in ('color', 'overlay'):
        assert cv2.imread(str(tmp_path / f'0016E5_07965_{suffix}.png')).shape == (360, 480, 3)
    assert 'road' in proc.stdout
    rec = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith('{')][0])
    assert sum(v['count'] for v in rec['occupancy'].values()) == 360 * 480


def test_segment_reports_missing_and_corrupt_files_without_traceback(tmp_path, capsys):
    # In-process (a traceback would be an exception escaping main()); the missing card case
    # is in test_cli_errors.py's sweep.
    from pspnet_ros.cli import main
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8\xff' + b'\x00' * 7)
    try:
        code = main(['segment', str(tmp_path / 'missing.png'), str(bad), '--out',
                     str(tmp_path / 'o')])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    assert code == 2          # nothing could be segmented
    assert 'image file not found' in out.err and 'could not decode' in out.err
    assert 'Traceback' not in out.err
    assert 'wrote' not in out.out and not (tmp_path / 'o').exists()


@pytest.mark.slow
def test_train_is_deterministic_resumable_and_writes_card(camvid, coral, tmp_path):
    imgs, labs = tmp_path / 'img', tmp_path / 'lab'
    imgs.mkdir(), labs.mkdir()
    for name in sorted((camvid / 'train').iterdir())[:4]:
        (imgs / name.name).symlink_to(name)
        (labs / name.name).symlink_to(camvid / 'trainannot' / name.name)
    common = ['train', '--train-images', imgs, '--train-labels', labs, '--batch-size', 2,
              '--input-size', 89, 89, '--crop-size', 73, 73, '--head-channels', 16,
              '--output-stride', 16, '--decoder-channels', 8,
              '--teacher', DEFAULT_CARD, '--distill-weight', 0.5, '--distill-correct', 1.0,
              '--lovasz-weight', 0.5,
              '--init', f'tflite:{coral / "mobilenet_v2_1.0_224_quant.tflite"}',
              '--threads', 1, '--no-progress', '--name', 'tiny']
    a = run_cli(*common, '--epochs', 2, '--out', tmp_path / 'a')
    assert a.returncode == 0, a.stderr
    b = run_cli(*common, '--epochs', 2, '--stop-after', 1, '--out', tmp_path / 'b')
    assert b.returncode == 0, b.stderr
    assert 'stopped after epoch 1' in b.stdout
    assert not (tmp_path / 'b' / 'tiny.safetensors').exists()
    b2 = run_cli(*common, '--epochs', 2, '--out', tmp_path / 'b')    # resumes at epoch 1
    assert 'resumed' in b2.stdout
    wa = load_file(str(tmp_path / 'a' / 'tiny.safetensors'))
    wb = load_file(str(tmp_path / 'b' / 'tiny.safetensors'))
    assert wa.keys() == wb.keys()
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    card = ModelCard.load(tmp_path / 'a' / 'tiny.yaml')
    assert card.input_size == [89, 89] and card.head_channels == 16
    assert (card.output_stride, card.decoder_channels) == (16, 8)
    assert '--epochs 2' in card.reproduce and '--output-stride 16 --decoder-channels 8' in \
        card.reproduce and '--distill-weight 0.5 --distill-correct 1.0 --lovasz-weight 0.5' in \
        card.reproduce
    assert any(k.startswith('decoder.') for k in wa)
    from pspnet_ros.core.backends.torch_backend import build_model
    assert build_model(card).decoder is not None        # the card rebuilds it, strictly


def test_building_the_parser_imports_no_rosbags():
    # The export venv (make test-export) has no rosbags: every subcommand's parser must build
    # without it.
    assert modules_loaded_by('from pspnet_ros.cli import build_parser; build_parser()',
                             ('rosbags',)) == []
