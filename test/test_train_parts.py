"""Pieces of ``pspnet-ros train`` with exact expected values: class weights, distillation, the
Lovasz-softmax loss, copy-paste augmentation and the teacher's cached targets."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import DEFAULT_CARD
from pspnet_ros.core.metrics import confusion_matrix, scores
from pspnet_ros.core.segmenter import Segmenter
from pspnet_ros.training.config import TrainConfig
from pspnet_ros.training.data import augment, batches as _batches, paste_classes, paste_ids
from pspnet_ros.training.losses import class_weights, distill_loss, lovasz_softmax
from pspnet_ros.training.teacher import load_teacher, teacher_targets


def test_sqrt_median_frequency_weights_follow_segnet():
    # class 0: 6 pixels, class 1: 3, class 2: 1; 255 is void and not counted.
    lab = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 255, 255]], np.uint8)
    ws = class_weights([lab], 3, 255, 'sqrt-median').numpy()
    # median freq 0.3 / freq = 0.5, 1, 3 (SegNet's weights), square-rooted
    np.testing.assert_allclose(ws, np.sqrt([0.5, 1.0, 3.0]), rtol=1e-6)
    assert class_weights([lab], 3, 255, 'none') is None
    # Plain median weighting was measured and rejected (docs/TRAINING.md): no longer an option.
    with pytest.raises(ValueError, match='class_weighting must be none or sqrt-median'):
        class_weights([lab], 3, 255, 'median')
    with pytest.raises(ValueError, match='class_weighting must be one of none, sqrt-median, '
                                         "got 'median'"):
        TrainConfig(train_images='a', train_labels='b', out='c',
                    class_weighting='median').validate()


def test_distillation_loss_is_the_kl_to_the_teacher_over_labelled_pixels():
    student = torch.zeros(1, 2, 1, 2)                       # uniform: p = (0.5, 0.5)
    teacher = torch.tensor([[[[math.log(3.0), 0.0]], [[0.0, 0.0]]]])   # (0.75, 0.25), uniform
    labels = torch.tensor([[[0, 255]]])                     # the second pixel is void
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert distill_loss(student, teacher, labels, 255, 1.0).item() == pytest.approx(kl, 1e-6)
    assert distill_loss(teacher, teacher, labels, 255, 1.0).item() == pytest.approx(0, abs=1e-7)
    # Temperature 2 softens both and scales by T^2.
    soft = torch.softmax(teacher[0, :, 0, 0] / 2, 0)
    kl2 = float((soft * (soft.log() - math.log(0.5))).sum()) * 4
    assert distill_loss(student, teacher, labels, 255, 2.0).item() == pytest.approx(kl2, 1e-5)
    # A teacher at another grid is resized to the student's; all-void batches give 0.
    assert distill_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, 2),
                        torch.zeros(1, 3, 3, dtype=torch.long), 255, 1.0).item() == 0.0
    assert distill_loss(student, teacher, torch.full((1, 1, 2), 255), 255, 1.0).item() == 0.0


def test_distillation_corrected_by_the_labels_where_the_teacher_is_wrong():
    student = torch.zeros(1, 2, 1, 3)                       # uniform: p = (0.5, 0.5)
    # The teacher says (0.75, 0.25) at every pixel; the labels are 0, 1 and void.
    teacher = torch.tensor([[[[math.log(3.0)] * 3], [[0.0] * 3]]])
    labels = torch.tensor([[[0, 1, 255]]])
    kl_right = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    # Off (0): both labelled pixels keep the teacher's target.
    assert distill_loss(student, teacher, labels, 255, 1.0, 0.0).item() == \
        pytest.approx(kl_right, 1e-6)
    # 1: where the teacher is wrong (pixel 2: it says 0, the label is 1) the target is the
    # label, so the KL there is the cross-entropy -log 0.5; pixel 1 keeps the teacher's.
    assert distill_loss(student, teacher, labels, 255, 1.0, 1.0).item() == \
        pytest.approx((kl_right + math.log(2)) / 2, 1e-6)
    # 0.5: the target there is (0.375, 0.625).
    mixed = 0.375 * math.log(0.375 / 0.5) + 0.625 * math.log(0.625 / 0.5)
    assert distill_loss(student, teacher, labels, 255, 1.0, 0.5).item() == \
        pytest.approx((kl_right + mixed) / 2, 1e-6)
    # A teacher that agrees with every label is left as it is.
    agree = torch.tensor([[[0, 0, 255]]])
    assert distill_loss(student, teacher, agree, 255, 1.0, 1.0).item() == \
        pytest.approx(kl_right, 1e-6)
    with pytest.raises(ValueError, match='distill_correct must be from 0 to 1, got 1.5'):
        TrainConfig(train_images='a', train_labels='b', out='c', teacher='t.yaml',
                    distill_weight=1.0, distill_correct=1.5).validate()


def test_lovasz_softmax_by_hand_and_equal_to_one_minus_iou_on_hard_predictions():
    # Two pixels of class 0 with p0 = 0.8 and 0.6, a third one void: the errors 0.4, 0.2 get the
    # Jaccard increments 0.5, 0.5 (1 - 1/2, then 1 - 0/2), so the loss is 0.3. Class 1 is
    # absent from the labels and carries nothing.
    logits = torch.tensor([[[[math.log(0.8 / 0.2), math.log(0.6 / 0.4), 5.0]],
                            [[0.0, 0.0, 0.0]]]])
    labels = torch.tensor([[[0, 0, 255]]])
    assert lovasz_softmax(logits, labels, 255).item() == pytest.approx(0.3, abs=1e-6)
    # On one-hot predictions it is exactly 1 - IoU, averaged over the classes in the labels
    # (the metrics module's IoU, void excluded).
    g = torch.Generator().manual_seed(3)
    lab = torch.randint(0, 5, (2, 9, 11), generator=g)
    lab[0, :2] = 255
    pred = torch.where(torch.rand(lab.shape, generator=g) < 0.6, lab.clamp(max=4),
                       torch.randint(0, 5, lab.shape, generator=g))
    hard = F.one_hot(pred, 5).permute(0, 3, 1, 2).float() * 60.0
    conf = confusion_matrix(pred.numpy().astype(np.uint8), lab.numpy().astype(np.uint8), 5, 255)
    expected = 1 - scores(conf)['miou']
    assert lovasz_softmax(hard, lab, 255).item() == pytest.approx(expected, abs=1e-5)
    assert lovasz_softmax(hard, torch.full_like(lab, 255), 255).item() == 0.0
    # Differentiable, and it lowers when the right class's score rises.
    x = torch.zeros(1, 2, 1, 3, requires_grad=True)
    lovasz_softmax(x, torch.tensor([[[0, 1, 1]]]), 255).backward()
    assert x.grad[0, 0, 0, 0] < 0 and x.grad[0, 1, 0, 1] < 0


def test_distillation_options_are_checked():
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', distill_weight=1.0)
    with pytest.raises(ValueError, match='needs --teacher CARD'):
        cfg.validate()
    with pytest.raises(ValueError, match='lovasz_weight must be >= 0'):
        TrainConfig(train_images='a', train_labels='b', out='c', lovasz_weight=-1).validate()
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', teacher=str(DEFAULT_CARD),
                      mean=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match='mean/std .* differ'):
        load_teacher(cfg, 11, torch.device('cpu'))
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', teacher=str(DEFAULT_CARD),
                      label_set='cityscapes')
    with pytest.raises(ValueError, match="11 classes of 'camvid', the student has 19"):
        load_teacher(cfg, 19, torch.device('cpu'))
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', teacher=str(DEFAULT_CARD))
    teacher = load_teacher(cfg, 11, torch.device('cpu'))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_teacher_sizes_are_checked():
    def cfg(**kw):
        return TrainConfig(train_images='a', train_labels='b', out='c', **kw)
    with pytest.raises(ValueError, match='teacher_sizes must be HEIGHTxWIDTH like 360x480, '
                                         "got '425-569'"):
        cfg(teacher='t.yaml', teacher_sizes='425-569').validate()
    with pytest.raises(ValueError, match=r"teacher_sizes '4x569': each side must be from 8 to "
                                         r'4096'):
        cfg(teacher='t.yaml', teacher_sizes='425x569,4x569').validate()
    with pytest.raises(ValueError, match='teacher_sizes needs --teacher'):
        cfg(teacher_sizes='425x569').validate()
    cfg(teacher='t.yaml', teacher_sizes='425x569, 489x649').validate()


def _one_hot(lab, classes):
    return (lab[..., None] == np.arange(classes)).astype(np.float16)


def test_soft_targets_follow_the_augmentation_of_the_labels():
    rng0 = np.random.default_rng(1)
    lab = np.kron(rng0.integers(0, 4, (6, 8)), np.ones((5, 5))).astype(np.uint8)  # blocks
    lab[:, :5] = 255                                          # a void band
    img = rng0.integers(0, 255, (30, 40, 3)).astype(np.uint8)
    pad = np.float32([127.5] * 3)
    soft = _one_hot(lab, 4)
    for seed in range(6):
        # No rescaling: the crop (padded past the frame) and the flip are exact.
        a = augment(img, lab, np.random.default_rng(seed), 1.0, (1, 1), (34, 36), 255, pad)
        im, lb, st = augment(img, lab, np.random.default_rng(seed), 1.0, (1, 1), (34, 36),
                             255, pad, soft=soft)
        assert np.array_equal(a[0], im) and np.array_equal(a[1], lb)   # the same draws
        assert st.shape == (34, 36, 4) and st.dtype == np.float32
        labelled = lb != 255
        assert np.array_equal(st.argmax(-1)[labelled], lb[labelled])
        # Void and the 2 + 2 rows of padding carry nothing; every other pixel one class.
        assert np.array_equal(st.sum(-1) == 0, lb == 255)
        assert (lb[:2] == 255).all() and (lb[-2:] == 255).all()
        # Rescaled: bilinear interpolation keeps a distribution, and it follows the labels.
        _, lb, st = augment(img, lab, np.random.default_rng(seed), 1.5, (1, 1), (34, 36), 255,
                            pad, soft=_one_hot(np.where(lab == 255, 0, lab), 4))
        np.testing.assert_allclose(st.sum(-1), 1.0, atol=1e-3)
        labelled = lb != 255
        assert (st.argmax(-1)[labelled] == lb[labelled]).mean() > 0.9
    with pytest.raises(ValueError, match=r'soft targets \(29, 40\) and label \(30, 40\)'):
        augment(img, lab, rng0, 1.0, (1, 1), (20, 20), 255, pad, soft=soft[:29])


@pytest.mark.slow
def test_teacher_targets_are_the_mean_over_sizes_and_mirrors_and_are_cached(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = [(rng.integers(0, 255, (36, 52, 3)).astype(np.uint8), np.zeros((36, 52), np.uint8)),
            (rng.integers(0, 255, (40, 44, 3)).astype(np.uint8), np.zeros((40, 44), np.uint8))]
    cfg = TrainConfig(train_images='a', train_labels='b', out=str(tmp_path),
                      teacher=str(DEFAULT_CARD), teacher_sizes='33x41,41x49')
    cache = tmp_path / 'targets.safetensors'
    got = teacher_targets(cfg, data, ['a.png', 'b.png'], 11, torch.device('cpu'), cache)
    assert 'with flips in' in capsys.readouterr().out and cache.is_file()
    for (img, lab), t in zip(data, got):
        assert t.shape == lab.shape + (11,) and t.dtype == np.float16
        # The same mean from the Segmenter's own preprocessing and torch backend.
        want = 0
        for size in ((33, 41), (41, 49)):
            seg = Segmenter(DEFAULT_CARD, input_size=size)
            for mirror in (False, True):
                x, _ = seg.preprocess(img[:, ::-1] if mirror else img)
                logits = torch.from_numpy(np.asarray(seg.backend.run(x), np.float32))
                p = F.interpolate(logits, lab.shape, mode='bilinear', align_corners=True)
                p = p[0].softmax(0).permute(1, 2, 0).numpy()
                want = want + (p[:, ::-1] if mirror else p)
        np.testing.assert_allclose(t.astype(np.float32), want / 4, atol=2e-3)
    # A second call reads the cache; other sizes make new targets.
    again = teacher_targets(cfg, data, ['a.png', 'b.png'], 11, torch.device('cpu'), cache)
    assert 'from ' + str(cache) in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(got, again))
    cfg.teacher_sizes = '33x41'
    other = teacher_targets(cfg, data, ['a.png', 'b.png'], 11, torch.device('cpu'), cache)
    assert 'with flips in' in capsys.readouterr().out
    assert not np.array_equal(other[0], got[0])


def test_training_with_cached_teacher_targets_is_repeatable(camvid, tmp_path):
    import shutil
    from safetensors.numpy import load_file
    from pspnet_ros.core.card import ModelCard
    from pspnet_ros.training.loop import train
    imgs, labs = tmp_path / 'img', tmp_path / 'lab'
    imgs.mkdir(), labs.mkdir()
    for name in sorted((camvid / 'train').iterdir())[:4]:
        (imgs / name.name).symlink_to(name)
        (labs / name.name).symlink_to(camvid / 'trainannot' / name.name)

    def cfg(out):
        return TrainConfig(train_images=str(imgs), train_labels=str(labs), out=str(out),
                           name='tiny', batch_size=2, input_size=[89, 89], crop_size=[73, 73],
                           head_channels=16, epochs=1, threads=1, teacher=str(DEFAULT_CARD),
                           teacher_sizes='49x65', distill_weight=1.0)
    train(cfg(tmp_path / 'a'), progress=False)
    cache = tmp_path / 'a' / 'teacher_targets.safetensors'
    assert len(load_file(str(cache))) == 4
    (tmp_path / 'b').mkdir()
    shutil.copyfile(cache, tmp_path / 'b' / cache.name)   # b reads a's targets from the file
    train(cfg(tmp_path / 'b'), progress=False)
    wa = load_file(str(tmp_path / 'a' / 'tiny.safetensors'))
    wb = load_file(str(tmp_path / 'b' / 'tiny.safetensors'))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    card = ModelCard.load(tmp_path / 'a' / 'tiny.yaml')
    assert '--teacher-sizes 49x65 --distill-weight 1.0' in card.reproduce


def _paste_case():
    """A 4x6 frame of class 0 and a donor whose column 1 is class 2 (pole) and column 4
    class 5; image values name the donor's column (10 + column) and the frame's (0)."""
    lab = np.zeros((4, 6), np.uint8)
    img = np.zeros((4, 6, 3), np.uint8)
    d_lab = np.full((4, 6), 3, np.uint8)
    d_lab[:, 1], d_lab[:, 4] = 2, 5
    d_img = np.broadcast_to((10 + np.arange(6, dtype=np.uint8))[None, :, None], (4, 6, 3))
    return img, lab, np.ascontiguousarray(d_img), d_lab


def test_paste_copies_only_the_chosen_classes_mirrored_or_not():
    img, lab, d_img, d_lab = _paste_case()
    seen = set()
    for seed in range(16):
        im, lb = paste_classes(img, lab, d_img, d_lab, [2], np.random.default_rng(seed),
                               max_shift=0)
        col = int(np.flatnonzero((lb == 2).all(0))[0])
        seen.add(col)
        want = np.zeros((4, 6), np.uint8)
        want[:, col] = 2                           # only the pole column, nothing of class 5
        assert np.array_equal(lb, want)
        assert (im[:, col] == 11).all()             # the donor's pixels come with it
        assert (np.delete(im, col, axis=1) == 0).all()
    assert seen == {1, 4}                           # as is (column 1) and mirrored (column 4)
    assert (lab == 0).all() and (img == 0).all()    # the inputs are not changed


def test_paste_shifts_sideways_and_drops_what_leaves_the_frame():
    img, lab, d_img, d_lab = _paste_case()
    soft, d_soft = _one_hot(lab, 6), _one_hot(d_lab, 6)
    shifts = set()
    for seed in range(40):
        im, lb, st = paste_classes(img, lab, d_img, d_lab, [2, 5], np.random.default_rng(seed),
                                   max_shift=0.5, soft=soft, donor_soft=d_soft)
        # Every pasted column keeps its donor column's class, image value and soft target.
        cols = np.flatnonzero((lb != 0).all(0))
        assert ((lb != 0).any(0) == (lb != 0).all(0)).all()   # whole columns only
        for c in cols:
            src = int(im[0, c, 0]) - 10
            assert lb[0, c] == d_lab[0, src] and (st[:, c].argmax(-1) == lb[0, c]).all()
        assert np.array_equal(st.argmax(-1), lb)
        # Columns 1 and 4 (mirrored: 4 and 1) stay 3 apart unless one left the frame.
        if len(cols) == 2:
            assert cols[1] - cols[0] == 3
        shifts.add(tuple(int(c) for c in cols))
    # Shifts of -3..3: both columns kept (e.g. (0, 3) and (2, 5)) or one off the edge.
    assert {(0, 3), (2, 5), (1,), (4,)} <= shifts


def test_paste_options_are_checked():
    img, lab, d_img, d_lab = _paste_case()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r'donor \(4, 5\) and frame \(4, 6\) differ'):
        paste_classes(img, lab, d_img[:, :5], d_lab[:, :5], [2], rng)
    with pytest.raises(ValueError, match='soft and donor_soft together'):
        paste_classes(img, lab, d_img, d_lab, [2], rng, soft=_one_hot(lab, 6))
    assert paste_ids('pole, pedestrian', ('sky', 'pole', 'pedestrian')) == [1, 2]
    with pytest.raises(ValueError, match=r'paste_classes: lamp not in the label set '
                                         r'\(sky, pole\)'):
        paste_ids('pole,lamp', ('sky', 'pole'))
    with pytest.raises(ValueError, match='paste_prob must be from 0'):
        TrainConfig(train_images='a', train_labels='b', out='c', paste_prob=1.5).validate()
    with pytest.raises(ValueError, match='needs --paste-classes'):
        TrainConfig(train_images='a', train_labels='b', out='c', paste_prob=0.5,
                    paste_classes=' ').validate()


def test_batches_paste_only_when_asked_and_keep_runs_without_it_unchanged():
    rng0 = np.random.default_rng(3)
    data = []
    for k in range(4):
        lab = np.zeros((30, 40), np.uint8)
        lab[:, 5 * k + 3] = 2                       # one pole column per frame, each elsewhere
        data.append((rng0.integers(0, 255, (30, 40, 3)).astype(np.uint8), lab))
    pad = np.float32([127.5] * 3)

    def batches(paste_prob, paste):
        cfg = TrainConfig(train_images='a', train_labels='b', out='c', batch_size=2,
                          input_size=[30, 40], crop_size=[30, 40], scale_range=[1.0, 1.0],
                          paste_prob=paste_prob)
        return list(_batches(data, np.arange(4), cfg, np.random.default_rng(7), 255, pad,
                             paste=paste))
    plain, off = batches(0.0, ()), batches(0.0, [2])
    for (x0, y0, _), (x1, y1, _) in zip(plain, off):      # off: the same draws, the same crops
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert all(int((y == 2).sum()) == 2 * 30 for _, y, _ in plain)   # one column a frame
    pasted = batches(1.0, [2])
    counts = [int((y[i] == 2).any(0).sum()) for _, y, _ in pasted for i in range(2)]
    assert all(c >= 1 for c in counts) and sum(counts) > 4      # poles from other frames


def test_sizes_off_the_output_stride_grid_are_named_with_the_nearest_ones_on_it(caplog):
    from pspnet_ros.core.network import off_grid
    assert off_grid((281, 377), 8) is None and off_grid((369, 465), 16) is None
    assert off_grid((384, 480), 16) == (
        '384x480 is off the output-stride-16 grid (sides 16k+1 keep the features on the input '
        'corners; nearest 384: 369 or 385, 480: 465 or 481); accuracy suffers')
    assert off_grid((281, 380), 8).startswith('281x380 is off the output-stride-8 grid')
    assert 'nearest 380: 377 or 385)' in off_grid((281, 380), 8)
    with caplog.at_level('WARNING', logger='pspnet_ros.segmenter'):
        Segmenter(DEFAULT_CARD, input_size=(369, 465))
        assert not caplog.records
        Segmenter(DEFAULT_CARD, input_size=(360, 465))
    assert caplog.records[0].getMessage() == (
        'model pspnet_mobilenetv2_camvid: input 360x465 is off the output-stride-16 grid (sides '
        '16k+1 keep the features on the input corners; nearest 360: 353 or 369); accuracy '
        'suffers')
