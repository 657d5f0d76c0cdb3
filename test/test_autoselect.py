"""``auto`` by measurement: the choice from timings, the time budget, and the cache."""
import json
import shutil

from conftest import DEFAULT_CARD
import pytest

from pspnet_ros.core import ModelCard
from pspnet_ros.core.backends import autoselect
from pspnet_ros.core.backends.autoselect import (Candidate, choose, measure, Measurement,
                                                 select)


def test_the_fastest_within_one_point_of_the_float_model_wins():
    m = [Measurement('torch', 0.100, 0.7093), Measurement('tflite int8', 0.070, 0.7075),
         Measurement('onnxruntime', 0.080, None), Measurement('coral', None, 0.80, 'failed')]
    assert choose(m, 0.7093).label == 'tflite int8'
    m[1].accuracy = 0.6992                   # 1.01 points below: not accurate enough
    assert choose(m, 0.7093).label == 'onnxruntime'
    m[1].accuracy = 0.6993                   # exactly 1 point below: accepted
    assert choose(m, 0.7093).label == 'tflite int8'
    assert choose([Measurement('a', 0.05, None), Measurement('b', 0.05, None)], None).label == 'a'
    assert choose([Measurement('a', None, None, 'failed')], 0.7) is None


class _Fake:
    """A backend whose run takes ``seconds`` of a fake clock."""

    def __init__(self, clock, seconds):
        self.clock, self.seconds = clock, seconds

    def run(self, batch):
        self.clock.now += self.seconds


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(scope='module')
def card():
    return ModelCard.load(DEFAULT_CARD)


def _cands(card, n=3):
    return [Candidate('torch', card, (('channels_last', i % 2 == 0), ('x', i))) for i in range(n)]


def test_measuring_takes_the_fastest_run_and_stops_at_the_budget(card):
    clock = _Clock()
    seconds = {0: 0.5, 1: 0.25, 2: 0.125}

    def build(name, c, device, channels_last, x):
        return _Fake(clock, seconds[x])
    out = measure(_cands(card), (65, 97), budget_s=2.75, runs=3, clock=clock, build=build)
    # candidate 0: warm-up + 3 runs = 2.0 s; candidate 1: warm-up and two runs reach 2.75 s
    assert [(m.label, m.seconds, m.note) for m in out] == [
        ('torch channels_last=True x=0', 0.5, ''),
        ('torch channels_last=False x=1', 0.25, ''),
        ('torch channels_last=True x=2', None, 'not measured: budget of 2.75 s spent')]
    assert out[0].accuracy == 0.7143                 # the shipped card's val mIoU


def test_a_candidate_that_cannot_run_is_skipped_with_its_reason(card):
    clock = _Clock()

    def build(name, c, device, channels_last, x):
        if x == 0:
            raise RuntimeError('no such device\nsecond line')
        return _Fake(clock, 0.125)
    out = measure(_cands(card, 2), (65, 97), budget_s=10, clock=clock, build=build)
    assert [(m.seconds, m.note) for m in out] == [(None, 'failed: no such device'),
                                                  (0.125, '')]


def test_a_stop_ends_the_measuring_and_nothing_is_chosen_or_cached(tmp_path, card):
    clock, built = _Clock(), []

    def build(name, c, device, channels_last, x):
        built.append(x)
        return _Fake(clock, 0.125)
    out = measure(_cands(card), (65, 97), budget_s=10, clock=clock, build=build,
                  stop=lambda: len(built) == 1)
    assert [(m.seconds, m.note) for m in out] == [(0.125, ''), (None, 'not measured: stopped'),
                                                  (None, 'not measured: stopped')]
    local = _local_card(tmp_path)
    assert select(local, cache_dir=tmp_path / 'cache', clock=clock, stop=lambda: True,
                  build=lambda name, c, device, channels_last: _Fake(clock, 0.1)) is None
    assert not (tmp_path / 'cache').exists()


def _local_card(tmp_path) -> ModelCard:
    """The default card and a copy of its weights, alone in a folder (no exports)."""
    (tmp_path / DEFAULT_CARD.name).write_text(DEFAULT_CARD.read_text())
    weights = DEFAULT_CARD.with_suffix('.safetensors')
    shutil.copy(weights, tmp_path / weights.name)
    return ModelCard.load(tmp_path / DEFAULT_CARD.name)


def test_the_choice_is_cached_and_a_changed_model_file_measures_again(tmp_path):
    (tmp_path / 'model').mkdir()
    local = _local_card(tmp_path / 'model')
    clock, built = _Clock(), []

    def build(name, c, device, channels_last):
        built.append(channels_last)
        return _Fake(clock, 0.03 if channels_last else 0.05)
    kw = dict(budget_s=10, cache_dir=tmp_path / 'cache', clock=clock, build=build)
    first = select(local, **kw)
    assert (first.backend, first.options, first.from_cache) == ('torch',
                                                                {'channels_last': True}, False)
    assert built == [False, True]
    second = select(local, **kw)
    assert second.from_cache and second.label == first.label and built == [False, True]
    assert second.describe().startswith('auto chose torch channels_last=True (cached: '
                                        'torch channels_last=False 50.0 ms, torch '
                                        'channels_last=True 30.0 ms')
    cached = json.loads((tmp_path / 'cache' / f'{first.key}.json').read_text())
    assert cached['label'] == 'torch channels_last=True'
    with open(local.weights_path, 'ab') as f:   # another model file: another key
        f.write(b'\0')
    third = select(local, **kw)
    assert not third.from_cache and third.key != first.key and len(built) == 4
    assert select(local, budget_s=0, cache_dir=tmp_path / 'cache') is None


@pytest.mark.slow
def test_a_real_configure_measures_then_reuses_the_cache(tmp_path, card):
    first = select(card, budget_s=30, cache_dir=tmp_path)
    assert first is not None and not first.from_cache
    measured = [m for m in first.measurements if m.seconds is not None]
    assert {m.label for m in measured} >= {'torch channels_last=False', 'torch channels_last=True'}
    fastest = min(m.seconds for m in measured if m.accuracy is None or m.accuracy >= 0.6993)
    assert next(m for m in measured if m.label == first.label).seconds == fastest
    second = select(card, budget_s=30, cache_dir=tmp_path)
    assert second.from_cache and (second.backend, second.options, second.card_path) == (
        first.backend, first.options, first.card_path)
    assert autoselect.default_cache_dir().name == 'auto_backend'
