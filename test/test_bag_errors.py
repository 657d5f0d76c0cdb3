"""Bags and errors a new user meets: bag-info, wrong topics, results that are not results,
bags that lie about themselves, --overwrite, segment on a folder, a fast --help."""
import json
import subprocess
import sys

from conftest import BAGS, DEFAULT_CARD, need, ROOT
import cv2
import numpy as np
import pytest

from pspnet_ros.cli import main
from pspnet_ros.evaluation.bagio import BagError, BagSource, BagWriter, image_msg, make_header
from pspnet_ros.core.rosimage import rgb_to_image_fields

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _label_bag(path, labels, pred=None, topic='/l', pred_topic='/m'):
    """One /l label and one /m prediction (``pred``, default the label itself) per frame."""
    with BagWriter(path) as bag:
        for i, lab in enumerate(labels):
            header = make_header(bag.ts, T0 + i * 100 * MS, 'camera')
            bag.write_labels(pred_topic, header, lab if pred is None else pred[i],
                             T0 + i * 100 * MS)
            bag.write_labels(topic, header, lab, T0 + i * 100 * MS)
    return path


def _eval(argv, capsys):
    code = main(['eval', *argv, '--no-progress'])
    out = capsys.readouterr()
    return code, out.out, [ln for ln in out.err.splitlines() if ln.strip()]


# -- bag-info ----------------------------------------------------------------------------------
def test_bag_info_lists_image_topics_with_counts_encodings_and_sizes(tmp_path, capsys):
    with BagWriter(tmp_path / 'b') as bag:
        for i in range(3):
            header = make_header(bag.ts, T0 + i * MS, 'camera')
            bag.write('/camera/image_raw', image_msg(bag.ts, header, rgb_to_image_fields(
                np.zeros((36, 48, 3), np.uint8))), T0 + i * MS)
            bag.write_labels('/camera/labels', header, np.zeros((36, 48), np.uint16) + 300,
                             T0 + i * MS)
    assert main(['bag-info', str(tmp_path / 'b')]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f'{tmp_path / "b"} (sqlite3): 2 topics, 2 image topics:'
    assert lines[1].split() == ['/camera/image_raw', 'Image', '3', 'msgs', 'rgb8', '36x48',
                                '(HxW)', '--image-topic']
    assert lines[2].split() == ['/camera/labels', 'Image', '3', 'msgs', '16UC1', '36x48',
                                '(HxW)', '--label-topic,', '--pred-topic']
    assert main(['bag-info', str(tmp_path / 'b'), '--json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(e['topic'], e['count'], e['encoding'], e['size']) for e in info['image_topics']] \
        == [('/camera/image_raw', 3, 'rgb8', [36, 48]), ('/camera/labels', 3, '16UC1', [36, 48])]


def test_bag_info_on_a_third_party_bag_names_its_two_image_topics_of_94(capsys):
    bag = need(BAGS / 'test_bag_mcap')
    assert main(['bag-info', str(bag)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f'{bag} (mcap): 94 topics, 2 image topics:'
    assert lines[1].split()[:5] == ['/test/sensor_msgs/compressed_image', 'CompressedImage', '2',
                                    'msgs', 'jpeg']
    assert 'first message unreadable' in lines[1]
    assert lines[2].split()[:6] == ['/test/sensor_msgs/image', 'Image', '2', 'msgs', 'rgb8',
                                    '480x640']
    assert 'first message malformed: data has 30 bytes, needs 921600' in lines[2]


# -- a wrong topic -----------------------------------------------------------------------------
def test_a_wrong_topic_is_one_short_line_with_the_close_match(tmp_path, capsys):
    bag = need(BAGS / 'test_bag_mcap')
    code, _, err = _eval([str(bag), '--image-topic', '/test/sensor_msgs/imag', '--out',
                          str(tmp_path / 'r'), '--model', str(DEFAULT_CARD)], capsys)
    assert code == 2
    assert err[0] == (f"error: bag {bag} has no image topic '/test/sensor_msgs/imag'; did you "
                      "mean '/test/sensor_msgs/image'? available topics: "
                      '/test/sensor_msgs/compressed_image (sensor_msgs/msg/CompressedImage), '
                      '/test/sensor_msgs/image (sensor_msgs/msg/Image) (the image topics of 94; '
                      f'`pspnet-ros bag-info {bag}` describes them)')
    assert len(err[0]) < 400            # it listed all 94 topics in 5,000 characters


# -- no result is a failure --------------------------------------------------------------------
def test_eval_exits_2_when_no_frame_decoded(tmp_path, capsys):
    bag = need(BAGS / 'test_bag_sqlite3')
    code, out, err = _eval([str(bag), '--image-topic', '/test/sensor_msgs/image', '--out',
                            str(tmp_path / 'r'), '--model', str(DEFAULT_CARD)], capsys)
    assert code == 2
    assert err[0] == ('error: none of the 2 frames read could be decoded as an image '
                      '(bad_image: 2)')
    assert 'frames/s' not in out


def test_labels_outside_the_class_set_are_counted_and_nothing_scored_exits_2(tmp_path, capsys):
    labels = [np.full((6, 8), 200, np.uint8) for _ in range(4)]
    pred = [np.zeros((6, 8), np.uint8) for _ in range(4)]
    bag = _label_bag(tmp_path / 'b', labels, pred)
    code, out, err = _eval([str(bag), '--pred-topic', '/m', '--label-topic', '/l', '--out',
                            str(tmp_path / 'r')], capsys)
    assert code == 2
    assert err[0] == ('warning: 192 ground-truth pixels in 4 frames have ids outside the class '
                      'set [0, 11) and not the ignore index 11 (ids 200); they are not scored')
    assert err[1].startswith('error: nothing could be scored: every ground-truth pixel '
                             'compared was outside the class set [0, 11)')
    assert 'nan' not in out and 'mIoU' not in out
    report = json.loads((tmp_path / 'r' / 'report.json').read_text())
    assert report['frames']['labels_outside_class_set'] == {'pixels': 192, 'frames': 4,
                                                            'ids': [200]}
    assert report['metrics'] is None


def test_a_few_outside_labels_are_reported_and_the_rest_scored(tmp_path, capsys):
    lab = np.zeros((6, 8), np.uint8)
    lab[0, :3] = 77
    bag = _label_bag(tmp_path / 'b', [lab, lab], [np.zeros((6, 8), np.uint8)] * 2)
    code, out, err = _eval([str(bag), '--pred-topic', '/m', '--label-topic', '/l', '--out',
                            str(tmp_path / 'r')], capsys)
    assert code == 0
    assert err == ['warning: 6 ground-truth pixels in 2 frames have ids outside the class set '
                   '[0, 11) and not the ignore index 11 (ids 77); they are not scored']
    report = json.loads((tmp_path / 'r' / 'report.json').read_text())
    assert report['metrics']['pixels'] == 2 * (48 - 3)
    assert '**label pixels outside the class set** (not scored): 6 in 2 frames, ids 77' in \
        (tmp_path / 'r' / 'summary.md').read_text()


# -- bags that lie -----------------------------------------------------------------------------
def test_a_declared_message_count_that_was_not_read_is_reported(tmp_path, capsys):
    bag = _label_bag(tmp_path / 'b', [np.zeros((6, 8), np.uint8)] * 6)
    meta = bag / 'metadata.yaml'
    text = meta.read_text()
    # /m's count (6) in the topic list: claim a billion.
    start = text.index('name: /m')
    before = text.rindex('message_count: 6', 0, start)
    meta.write_text(text[:before] + 'message_count: 1000000000' + text[before + 16:])
    code, out, err = _eval([str(bag), '--pred-topic', '/m', '--label-topic', '/l', '--out',
                            str(tmp_path / 'r')], capsys)
    assert err == ["warning: the bag's index declares 1000000000 messages on /m, but 6 were "
                   'read']
    assert code == 1
    assert 'frames read 6, scored 6' in out


def test_bag_open_errors_are_one_line_and_end_with_one_period(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError) as err:
        BagSource(tmp_path / 'empty').open()
    msg = str(err.value)
    assert '\n' not in msg and '..' not in msg and msg.endswith('.')
    assert 'metadata.yaml is missing' in msg
    _label_bag(tmp_path / 'b', [np.zeros((6, 8), np.uint8)])
    db = tmp_path / 'b' / 'b.db3'
    db.write_bytes(db.read_bytes()[:3000])
    with pytest.raises(BagError) as err:
        BagSource(db).open()
    msg = str(err.value)
    assert msg.endswith('sqlite3 bags cut short cannot be read (try `sqlite3 FILE .recover`).')
    assert '..' not in msg and '\n' not in msg
    (tmp_path / 'yaml').mkdir()
    (tmp_path / 'yaml' / 'metadata.yaml').write_text('garbage: [\n')
    with pytest.raises(BagError) as err:
        BagSource(tmp_path / 'yaml').open()
    assert '\n' not in str(err.value) and str(err.value).endswith('rebuilds it).')


# -- --overwrite -------------------------------------------------------------------------------
@pytest.mark.slow
def test_overwrite_replaces_a_bag_and_never_a_folder_of_other_files(tmp_path, capsys):
    imgs, labs = tmp_path / 'imgs', tmp_path / 'labs'
    imgs.mkdir()
    labs.mkdir()
    cv2.imwrite(str(imgs / 'a.png'), np.zeros((6, 8, 3), np.uint8))
    cv2.imwrite(str(labs / 'a.png'), np.zeros((6, 8), np.uint8))
    args = ['make-bag', str(imgs), str(labs), str(tmp_path / 'bag')]
    assert main(args) == 0
    assert main(args) == 2
    assert 'exists already' in capsys.readouterr().err
    assert main([*args, '--overwrite', '--storage', 'mcap']) == 0
    assert BagSource(tmp_path / 'bag').open().storage == 'mcap'
    capsys.readouterr()
    assert main(['make-bag', str(imgs), str(labs), str(imgs), '--overwrite']) == 2
    assert 'holds files that are not part of a bag (e.g. a.png)' in capsys.readouterr().err
    assert (imgs / 'a.png').exists()
    bag = _label_bag(tmp_path / 'p', [np.zeros((6, 8), np.uint8)])
    ev = ['eval', str(bag), '--image-topic', '/m', '--out', str(tmp_path / 'r'), '--write-bag',
          str(tmp_path / 'pred'), '--no-progress', '--model', str(DEFAULT_CARD)]
    assert main(ev) == 0
    assert main(ev) == 2
    assert 'exists already; choose a new output bag path (or pass --overwrite)' in \
        capsys.readouterr().err
    assert main([*ev, '--overwrite']) == 0
    # --overwrite never removes the bag being evaluated.
    assert main(['eval', str(bag), '--image-topic', '/m', '--write-bag', str(bag),
                 '--overwrite', '--no-progress', '--out', str(tmp_path / 'r')]) == 2
    assert 'is one of the bags to evaluate' in capsys.readouterr().err
    assert BagSource(bag).open().topics


# -- segment DIR, --help -----------------------------------------------------------------------
def test_segment_runs_on_the_images_of_a_folder(tmp_path, capsys):
    folder = tmp_path / 'frames'
    folder.mkdir()
    for name in ('b.png', 'a.jpg'):
        cv2.imwrite(str(folder / name), np.full((24, 32, 3), 90, np.uint8))
    (folder / 'notes.txt').write_text('not an image')
    assert main(['segment', str(folder), '--out', str(tmp_path / 'o')]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split(':')[0] for ln in out[:2]] == [str(folder / 'a.jpg'), str(folder / 'b.png')]
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == [
        'a_color.png', 'a_mask.png', 'a_overlay.png', 'b_color.png', 'b_mask.png',
        'b_overlay.png']
    (tmp_path / 'empty').mkdir()
    assert main(['segment', str(tmp_path / 'empty')]) == 2
    assert 'no images (.png, .jpg' in capsys.readouterr().err


def test_help_loads_no_heavy_module():
    """--help answers in well under a second: building the parser imports no torch, rclpy,
    OpenCV, rosbags or matplotlib (each subcommand imports what it needs when it runs)."""
    code = ('import sys; from pspnet_ros.cli import build_parser; build_parser(); '
            "print(sorted(m for m in ('torch', 'rclpy', 'cv2', 'rosbags', 'matplotlib', "
            "'onnxruntime') if m in sys.modules))")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[]'


def test_cli_defaults_repeat_the_packages_own():
    from pspnet_ros.cli import eval as eval_cli, make_bag as make_bag_cli
    from pspnet_ros.core.image import DEFAULT_MAX_PIXELS
    from pspnet_ros.evaluation import DEFAULT_SHARD_FRAMES, DEFAULT_START_STAMP
    assert eval_cli.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
    assert eval_cli.DEFAULT_SHARD_FRAMES == DEFAULT_SHARD_FRAMES
    assert make_bag_cli.DEFAULT_START_STAMP == DEFAULT_START_STAMP
