"""Official PSPNet checkpoint layouts load with strict key checking; weights load safely."""
from pathlib import Path

import pytest
import torch

from pspnet_ros.core.model import PSPNet
from pspnet_ros.core.weights import WeightsError, load_into, load_state_dict

DATA = Path(__file__).parent / 'data'


def table(name):
    rows = []
    for line in (DATA / f'{name}.keys').read_text().splitlines():
        key, shape = line.split()
        rows.append((key, () if shape == 'scalar' else tuple(int(v) for v in shape.split('x'))))
    return rows


def fake_checkpoint(rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if not s else torch.randn(s, generator=g)) for k, s in rows}


@pytest.mark.parametrize('name,depth,classes', [
    ('semseg_pspnet50_ade20k', 50, 150), ('semseg_pspnet101_ade20k', 101, 150),
    ('semseg_pspnet50_voc', 50, 21), ('semseg_pspnet101_voc', 101, 21),
    ('semseg_pspnet50_cityscapes', 50, 19), ('semseg_pspnet101_cityscapes', 101, 19)])
def test_model_state_dict_equals_official_semseg_table(name, depth, classes):
    with torch.device('meta'):      # shapes only: no memory, no init time
        model = PSPNet(f'pspnet_resnet{depth}', classes)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k[len('module.'):]: s for k, s in table(name)}
    assert ours == theirs


def test_semseg_checkpoint_file_loads_strictly_with_values(tmp_path):
    rows = table('semseg_pspnet50_voc')
    state = fake_checkpoint(rows)
    path = tmp_path / 'train_epoch_50.pth'
    torch.save({'epoch': 50, 'state_dict': state}, path)   # how semseg saves
    model = PSPNet('pspnet_resnet50', 21)
    load_into(model, load_state_dict(path))
    assert torch.equal(model.cls[4].weight, state['module.cls.4.weight'])
    assert torch.equal(model.layer3[5].bn2.running_var,
                       state['module.layer3.5.bn2.running_var'])


@pytest.mark.parametrize('name,depth,classes', [('mmseg_pspnet_r50_d8_cityscapes', 50, 19),
                                                ('mmseg_pspnet_r101_d8_ade20k', 101, 150)])
def test_mmseg_checkpoint_loads_through_key_map(tmp_path, name, depth, classes):
    state = fake_checkpoint(table(name))
    path = tmp_path / 'mmseg.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': state}, path)
    model = PSPNet(f'pspnet_resnet{depth}', classes, stem=(32, 32, 64))
    load_into(model, load_state_dict(path))
    assert torch.equal(model.layer0[6].weight, state['backbone.stem.6.weight'])
    assert torch.equal(model.ppm.features[3][2].bias,
                       state['decode_head.psp_modules.3.1.bn.bias'])
    assert torch.equal(model.cls[0].weight, state['decode_head.bottleneck.conv.weight'])
    assert torch.equal(model.aux[4].bias, state['auxiliary_head.conv_seg.bias'])


def test_wrong_class_count_is_reported_with_key_and_shapes(tmp_path):
    path = tmp_path / 'ade.pth'
    torch.save({'state_dict': fake_checkpoint(table('semseg_pspnet50_ade20k'))}, path)
    with pytest.raises(WeightsError, match=r'cls\.4\.weight: file \(150, 512, 1, 1\) vs model '
                                           r'\(19, 512, 1, 1\)'):
        load_into(PSPNet('pspnet_resnet50', 19), load_state_dict(path))


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ('touch pwned_marker',))


def test_pickled_code_in_a_checkpoint_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'payload': _Evil()}, path)
    with pytest.raises(WeightsError, match='weights_only=True'):
        load_state_dict(path)
    assert not (tmp_path / 'pwned_marker').exists()


def test_truncated_safetensors_and_missing_files_are_clear_errors(tmp_path):
    from safetensors.torch import save_file
    good = tmp_path / 'w.safetensors'
    save_file({'a': torch.ones(100)}, str(good))
    bad = tmp_path / 'bad.safetensors'
    bad.write_bytes(good.read_bytes()[:60])
    with pytest.raises(WeightsError, match='not a valid safetensors file'):
        load_state_dict(bad)
    with pytest.raises(WeightsError, match='not found'):
        load_state_dict(tmp_path / 'nope.pth')
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'\x00not a zip' * 10)
    with pytest.raises(WeightsError, match='could not be loaded'):
        load_state_dict(garbage)
