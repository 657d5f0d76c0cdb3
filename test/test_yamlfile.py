"""Messages for wrong files: one-line YAML errors, a weights file where a card belongs."""
from conftest import DEFAULT_CARD
import pytest

from pspnet_ros.core import ModelCard, ModelCardError
from pspnet_ros.core.yamlfile import load_yaml


def test_a_broken_card_is_one_line_with_file_line_column_and_problem(tmp_path):
    card = tmp_path / 'broken.yaml'
    card.write_text('name: m\nweights: m.safetensors\ninput_size: [281, 377\nlabel_set: camvid\n')
    with pytest.raises(ModelCardError) as err:
        ModelCard.load(card)
    expected = "expected ',' or ']', but got ':' (while parsing a flow sequence)"
    assert str(err.value) == f'{card}:4:10: not valid YAML: {expected}'


def test_a_broken_parameter_file_is_one_line(tmp_path):
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    model: "unclosed\n')
    with pytest.raises(ValueError) as err:
        load_yaml(params)
    assert '\n' not in str(err.value)
    assert str(err.value).startswith(
        f'{params}:4:1: not valid YAML: found unexpected end of stream')


def test_a_weights_file_passed_as_the_card_says_to_pass_its_card():
    weights = DEFAULT_CARD.with_suffix('.safetensors')
    if not weights.is_file():
        pytest.skip('the shipped weights are not present')
    with pytest.raises(ModelCardError) as err:
        ModelCard.load(weights)
    assert str(err.value) == (f'{weights} is a weights file; pass its card (.yaml) '
                              f'({DEFAULT_CARD})')


def test_an_export_passed_as_the_card_names_the_card_beside_it(tmp_path):
    model = tmp_path / 'm_int8.tflite'
    model.write_bytes(b'TFL3\x00\xff')
    (tmp_path / 'm_int8.tflite.yaml').write_text('name: m\n')
    with pytest.raises(ModelCardError, match=r'm_int8\.tflite is a weights file; pass its card '
                                             r'\(\.yaml\) \(.*m_int8\.tflite\.yaml\)$'):
        ModelCard.load(model)


def test_another_binary_file_is_not_a_text_file(tmp_path):
    blob = tmp_path / 'card.yaml'
    blob.write_bytes(b'name: m\n\xff\xfe')
    with pytest.raises(ModelCardError, match=r'card\.yaml is not a text file \(byte 8 is not '
                                             r'UTF-8\); pass a YAML file$'):
        ModelCard.load(blob)
