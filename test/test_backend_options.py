"""Backend options are declared as data: typed, range-checked, and checked without imports."""
import inspect
import subprocess
import sys

from conftest import DEFAULT_CARD
import pytest

from pspnet_ros.core import ModelCard
from pspnet_ros.core.backends import (applicable_options, BACKEND_OPTIONS, BackendError,
                                      create_backend, OptionError, parse_option_value)
from pspnet_ros.core.backends.base import _backend_class
from pspnet_ros.node.config import parse_options


def test_the_issue_example_reads_two_falses_and_refuses_a_negative_thread_count():
    assert parse_options(['fuse_bn=no', 'channels_last=off']) == {
        'fuse_bn': False, 'channels_last': False}
    with pytest.raises(ValueError, match=r'^backend option threads=-5 is out of range 0\.\.1024'):
        parse_options(['fuse_bn=no', 'channels_last=off', 'threads=-5'])


@pytest.mark.parametrize('text,value', [
    ('true', True), ('True', True), ('yes', True), ('on', True), ('1', True), (' YES ', True),
    ('false', False), ('FALSE', False), ('no', False), ('off', False), ('0', False)])
def test_booleans_take_the_yaml_spellings(text, value):
    assert parse_option_value(text, 'channels_last') is value


@pytest.mark.parametrize('text', ['maybe', '2', '', 'truee', 'y'])
def test_a_boolean_that_is_none_of_them_names_the_option_and_the_spellings(text):
    with pytest.raises(OptionError, match=rf'^backend option channels_last={text!r}: expected '
                                          r'true/yes/on/1 or false/no/off/0$'):
        parse_option_value(text, 'channels_last')


def test_integers_are_whole_and_in_range():
    assert parse_option_value('3', 'num_threads') == 3
    assert parse_option_value('0', 'threads') == 0
    for text in ('1.5', 'two', 'true'):
        with pytest.raises(OptionError, match=rf'^backend option num_threads={text!r}: expected '
                                              r'a whole number in 0\.\.1024$'):
            parse_option_value(text, 'num_threads')
    with pytest.raises(OptionError, match=r'num_threads=5000 is out of range 0\.\.1024'):
        parse_option_value('5000', 'num_threads')


def test_compile_takes_a_boolean_or_a_mode():
    assert parse_option_value('off', 'compile') is False
    assert parse_option_value('max-autotune', 'compile') == 'max-autotune'
    with pytest.raises(OptionError, match=r'compile=.fast.: expected .* or a mode: default, '):
        parse_option_value('fast', 'compile')


def test_undeclared_names_are_typed_by_their_look_and_refused_later():
    assert parse_options(['scale=0.5', 'channel_last=true']) == {'scale': 0.5,
                                                                 'channel_last': True}
    with pytest.raises(BackendError, match=r"unknown backend option\(s\) \['channel_last'\] for "
                                           r"backend tflite; it takes \['num_threads', "
                                           r"'xnnpack'\]"):
        applicable_options('tflite', {'channel_last': True})


def test_the_python_api_checks_values_too():
    card = ModelCard.load(DEFAULT_CARD)
    with pytest.raises(BackendError, match=r'^backend option threads=-1 is out of range'):
        create_backend('torch', card, threads=-1)
    with pytest.raises(BackendError, match=r"^backend option fp16='sometimes'"):
        create_backend('torch', card, fp16='sometimes')
    assert applicable_options('torch', {'fuse_bn': 'no', 'num_threads': 2}) == (
        {'fuse_bn': False}, "backend options ['num_threads'] do not apply to backend torch; "
                            'ignored')


def test_auto_checks_its_chain_members_mappings_and_shared_options():
    opts, note = applicable_options('auto', {'chain': 'tflite,torch', 'num_threads': '2',
                                             'torch': {'channels_last': 'off'}})
    assert opts == {'chain': 'tflite,torch', 'num_threads': 2,
                    'torch': {'channels_last': False}} and note == ''
    with pytest.raises(BackendError, match=r"unknown backend option\(s\) \['xnnpack'\] for "
                                           r'backend torch'):
        applicable_options('auto', {'torch': {'xnnpack': True}})
    with pytest.raises(BackendError, match=r"unknown backend option\(s\) \['chian'\] for "
                                           r'backend auto'):
        applicable_options('auto', {'chian': 'torch'})
    with pytest.raises(BackendError, match=r'threads=-2 is out of range'):
        applicable_options('auto', {'threads': -2})


@pytest.mark.parametrize('name', sorted(BACKEND_OPTIONS))
def test_the_declarations_match_each_backend_constructor(name):
    params = inspect.signature(_backend_class(name).__init__).parameters
    declared = {o.name: o.default for o in BACKEND_OPTIONS[name]}
    actual = {k: p.default for k, p in params.items() if k not in ('self', 'card', 'device')}
    assert declared == actual


def test_checking_a_typo_imports_no_backend_and_no_torch():
    code = '\n'.join([
        'import sys',
        'from pspnet_ros.node.config import parse_options',
        'from pspnet_ros.core.backends import applicable_options, BackendError',
        "opts = parse_options(['channel_last=true', 'fuse_bn=no'])",
        'try:',
        "    applicable_options('torch', opts)",
        'except BackendError as exc:',
        '    print(exc)',
        "print(sorted(m for m in sys.modules if m in ('torch', 'onnxruntime', 'ai_edge_litert')",
        "             or m.startswith('pspnet_ros.core.backends.') and m.endswith('_backend')))",
    ])
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    assert out[0].startswith("unknown backend option(s) ['channel_last'] for backend torch")
    assert out[1] == '[]'
