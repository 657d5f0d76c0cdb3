"""Bad input to any ``pspnet-ros`` subcommand: one ``error:`` line, exit 2, no traceback."""
from pathlib import Path
import subprocess
import sys

import pytest

from conftest import DEFAULT_CARD, ROOT

CARD = str(DEFAULT_CARD)


def _pickled_checkpoint(tmp):
    import torch
    out = tmp / 'train_out'
    (out / 'checkpoints').mkdir(parents=True)
    torch.save({'epoch': 1, 'model': object()}, out / 'checkpoints' / 'last.pt')
    return out


def _image(tmp):
    import cv2
    import numpy as np
    path = tmp / 'frame.png'
    cv2.imwrite(str(path), np.full((24, 32, 3), 100, np.uint8))
    return path


def _folders(tmp):
    (tmp / 'imgs').mkdir()
    (tmp / 'labs').mkdir()
    _image(tmp).rename(tmp / 'imgs' / 'a.png')
    cv2 = pytest.importorskip('cv2')
    cv2.imwrite(str(tmp / 'labs' / 'a.png'), __import__('numpy').zeros((24, 32), 'uint8'))
    return tmp


def _shrink_label(tmp):
    import cv2
    cv2.imwrite(str(tmp / 'labs' / 'a.png'), __import__('numpy').zeros((12, 16), 'uint8'))


def _unpaired(tmp):
    _folders(tmp)
    (tmp / 'labs' / 'a.png').rename(tmp / 'labs' / 'b.png')
    return tmp


def _small_bag(tmp):
    from pspnet_ros.evaluation.makebag import make_bag
    _folders(tmp)
    make_bag(tmp / 'imgs', tmp / 'labs', tmp / 'small_bag', limit=1)
    return tmp


# (id, argv with {tmp}/{img}/{card} placeholders, setup, expected text in the error line)
CASES = [
    ('segment-missing-file', ['segment', '{tmp}/missing.png', '--out', '{tmp}/seg'], None,
     'image file not found'),
    ('segment-unknown-backend', ['segment', '{img}', '--backend', 'bogus', '--out', '{tmp}/s'],
     _image, "unknown backend 'bogus'"),
    ('segment-cuda-without-cuda', ['segment', '{img}', '--device', 'cuda', '--out', '{tmp}/s'],
     _image, 'torch.cuda.is_available() is False'),
    ('segment-edgetpu-on-a-pytorch-card', ['segment', '{img}', '--backend', 'edgetpu',
                                           '--out', '{tmp}/s'], _image, 'backend edgetpu runs'),
    ('segment-tflite-on-a-pytorch-card', ['segment', '{img}', '--backend', 'tflite',
                                          '--out', '{tmp}/s'], _image, 'backend tflite runs'),
    ('segment-missing-card', ['segment', '{img}', '--model', '{tmp}/none.yaml'], _image,
     'model card not found'),
    ('segment-bad-alpha', ['segment', '{img}', '--alpha', '2'], _image, 'alpha'),
    ('train-missing-folder', ['train', '--train-images', '{tmp}/none', '--train-labels',
                              '{tmp}/none', '--out', '{tmp}/t'], None, 'not found'),
    ('train-huge-input-size', ['train', '--train-images', '{tmp}/imgs', '--train-labels',
                               '{tmp}/labs', '--out', '{tmp}/t', '--input-size', '100000',
                               '100000'], _folders, 'input_size'),
    ('train-resume-pickled-checkpoint', ['train', '--train-images', '{tmp}/imgs',
                                         '--train-labels', '{tmp}/labs', '--out',
                                         '{tmp}/train_out'],
     lambda t: (_folders(t), _pickled_checkpoint(t)), 'last.pt'),
    ('train-cuda-without-cuda', ['train', '--train-images', '{tmp}/imgs', '--train-labels',
                                 '{tmp}/labs', '--out', '{tmp}/t', '--device', 'cuda'],
     _folders, 'torch.cuda.is_available() is False'),
    ('train-unknown-device', ['train', '--train-images', '{tmp}/imgs', '--train-labels',
                              '{tmp}/labs', '--out', '{tmp}/t', '--device', 'tpu'],
     _folders, "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ('eval-missing-bag', ['eval', '{tmp}/nobag', '--image-topic', '/x', '--out', '{tmp}/e'],
     None, 'bag not found'),
    ('eval-unknown-backend', ['eval', '{tmp}/nobag', '--image-topic', '/x', '--backend',
                              'bogus', '--out', '{tmp}/e'], None, "unknown backend 'bogus'"),
    ('eval-no-topic', ['eval', '{tmp}/nobag', '--out', '{tmp}/e'], None, '--image-topic'),
    ('make-bag-missing-folder', ['make-bag', '{tmp}/none', '{tmp}/none', '{tmp}/bag'], None,
     'folder not found'),
    ('make-bag-unpaired-folders', ['make-bag', '{tmp}/imgs', '{tmp}/labs', '{tmp}/bag'],
     _unpaired, 'no label'),
    ('make-bag-size-mismatch', ['make-bag', '{tmp}/imgs', '{tmp}/labs', '{tmp}/bag'],
     lambda t: (_folders(t), _shrink_label(t)), 'differ'),
    ('bag-info-missing-bag', ['bag-info', '{tmp}/nobag'], None, 'bag not found'),
    ('bag-info-not-a-bag', ['bag-info', '{tmp}/imgs'], _folders, 'metadata.yaml is missing'),
    ('live-missing-bag', ['live', '{tmp}/nobag'], None, 'bag not found'),
    ('live-bad-rate', ['live', '{tmp}/nobag', '--rate-factor', '0'], None, 'rate-factor'),
    ('live-no-node', ['live', '{tmp}/small_bag', '--wait', '3', '--node', '/nobody'],
     _small_bag, 'no node at /nobody subscribed to /image within 3 s'),
    ('export-missing-card', ['export', '{tmp}/none.yaml', '--format', 'onnx', '--out',
                             '{tmp}/x'], None, 'model card not found'),
    ('export-int8-without-calibration', ['export', '{card}', '--format', 'tflite-int8',
                                         '--out', '{tmp}/x'], None, '--calib-dir'),
    ('bench-unknown-backend', ['bench', '--backends', 'bogus', '--frames', '1'], None,
     "unknown backend 'bogus'"),
    ('bench-bad-size', ['bench', '--sizes', '12by34', '--frames', '1'], None, 'HEIGHTxWIDTH'),
    ('bench-huge-size', ['bench', '--sizes', '100000x100000', '--frames', '1'], None,
     'input_size'),
    ('bench-bad-option', ['bench', '--backends', 'torch@fp16', '--frames', '1'], None,
     'key=value'),
]


# live-no-node waits for a node over DDS.
@pytest.mark.parametrize('argv, setup, expect', [
    pytest.param(*c[1:], id=c[0], marks=[pytest.mark.ros] if c[0] == 'live-no-node' else [])
    for c in CASES])
def test_bad_input_gives_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, setup,
                                                   expect):
    # In-process (a traceback would be an exception escaping main()), so the sweep stays
    # fast; test_export_without_litert_torch... runs the real console entry point.
    if 'cuda' in argv and __import__('torch').cuda.is_available():
        pytest.skip('CUDA is available here')
    from pspnet_ros.cli import main
    img = ''
    if setup is not None:
        made = setup(tmp_path)
        img = made if not isinstance(made, tuple) else ''
    args = [a.format(tmp=tmp_path, img=img, card=CARD) for a in argv]
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exc:        # argparse's own usage errors
        code = exc.code
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if 'error:' in line]
    assert len(errors) == 1, out.err
    assert expect in errors[0], out.err
    assert code == 2, out.err
    assert not (tmp_path / 'x').exists(), 'a failed export left its output folder'
    assert not (tmp_path / 'bag').exists(), 'a failed make-bag left its bag folder'
    assert 'wrote' not in out.out, out.out
    if argv[0] == 'live' and setup is not None:
        # It says what it waits for before waiting.
        assert out.err.startswith('waiting up to 3 s for /nobody to subscribe to /image'), \
            out.err


@pytest.mark.slow          # the console entry point in a process of its own
def test_export_without_litert_torch_names_the_package_and_writes_nothing(tmp_path):
    pytest.importorskip('torch')
    try:
        import litert_torch  # noqa: F401
        pytest.skip('litert-torch is installed here')
    except ImportError:
        pass
    exe = Path(sys.executable).with_name('pspnet-ros')
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'pspnet_ros.cli']
    proc = subprocess.run([*cmd, 'export', CARD, '--format', 'tflite', '--out',
                           str(tmp_path / 'out')], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.startswith('error: --format tflite needs the Python package litert_torch')
    assert not (tmp_path / 'out').exists()


def test_every_subcommand_is_swept():
    from pspnet_ros.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == 'command')
    swept = {c[1][0] for c in CASES}
    assert set(sub.choices) <= swept, set(sub.choices) - swept


@pytest.mark.slow          # the command line in a process of its own
def test_edgetpu_without_its_library_is_one_clean_error(coral, tmp_path):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert is not installed')
    img = coral / 'bird_segmentation.bmp'
    card = ROOT / 'models' / 'third_party' / 'coral_deeplabv3_mnv2_pascal.yaml'
    proc = subprocess.run([sys.executable, '-m', 'pspnet_ros.cli', 'segment', str(img),
                           '--model', str(card), '--backend', 'edgetpu', '--out',
                           str(tmp_path / 's')], capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        pytest.skip('an Edge TPU is attached here')
    assert proc.returncode == 2, proc.stderr
    # ai_edge_litert's half-built Delegate used to print an AttributeError at exit.
    assert proc.stderr.startswith('error: Edge TPU delegate libedgetpu.so.1 could not be '
                                  'loaded'), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
