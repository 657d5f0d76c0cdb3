"""Where training starts (issue 38 item 1) and what it is told: --init builds the init card's
network and loads every tensor or names what does not fit; --new-classes / --fresh-layers
start layers fresh on purpose; one network spec for cards and training; recipe files."""
import dataclasses

import pytest
import torch

from conftest import DEFAULT_CARD
from pspnet_ros.core import ModelCard
from pspnet_ros.core.network import build_network, NETWORK_FIELDS, NetworkSpec
from pspnet_ros.core.weights import load_state_dict, WeightsError
from pspnet_ros.training.config import load_recipe, TrainConfig
from pspnet_ros.training.init import build_for_training, init_card, with_init_network
from pspnet_ros.training.loop import _reproduce


def _cfg(**kw):
    return TrainConfig(train_images='a', train_labels='b', out='c', **kw)


def test_cards_and_training_share_one_network_spec():
    card_fields = {f.name: f.default for f in dataclasses.fields(ModelCard)}
    cfg_fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    spec_fields = {f.name: f.default for f in dataclasses.fields(NetworkSpec)}
    for name in NETWORK_FIELDS:
        assert card_fields[name] == cfg_fields[name] == spec_fields[name]
    assert spec_fields['head_channels'] == 512          # the paper's width
    card = ModelCard.load(DEFAULT_CARD)
    assert card.network == NetworkSpec(11, 'pspnet_mobilenetv2', 128, 16, 64, 4)
    net = build_network(card.network)
    assert net.cls[0].out_channels == 128 and net.decoder is not None and net.aux is None
    assert NetworkSpec.of(_cfg(head_channels=16), 3).head_channels == 16


def test_init_from_the_shipped_weights_builds_its_decoder_and_loads_every_tensor(capsys):
    weights = DEFAULT_CARD.with_suffix('.safetensors')
    assert init_card(str(weights)).path == DEFAULT_CARD            # the card beside it
    for init in (str(weights), str(DEFAULT_CARD)):
        cfg, card = with_init_network(_cfg(init=init))
        assert (cfg.head_channels, cfg.decoder_channels, cfg.decoder_stride) == (128, 64, 4)
        model = build_for_training(cfg, 11, card)
        out = capsys.readouterr().out
        assert out.endswith('; start fresh: aux\n')             # not saved with models
        state = load_state_dict(weights)
        own = model.state_dict()
        assert all(torch.equal(own[k], v) for k, v in state.items())
        assert len(state) == sum(not k.startswith('aux.') for k in own)


def test_a_tensor_that_does_not_fit_is_an_error_naming_it(tmp_path):
    from safetensors.torch import save_file
    state = load_state_dict(DEFAULT_CARD.with_suffix('.safetensors'))
    broken = dict(state)
    del broken['decoder.project.weight']
    broken['extra.weight'] = torch.zeros(1)
    save_file(broken, str(tmp_path / 'x.safetensors'))
    # Weights without a card: the config's network, here the shipped one's by hand.
    cfg = _cfg(init=str(tmp_path / 'x.safetensors'), head_channels=128, decoder_channels=64,
               decoder_stride=4)
    with pytest.raises(WeightsError, match=r'1 missing: decoder\.project\.weight; '
                                           r'1 unexpected: extra\.weight'):
        build_for_training(cfg, 11)
    # The default network (no decoder, head 512) against the shipped weights: shapes differ.
    with pytest.raises(WeightsError, match=r'22 unexpected: decoder\..*6 of another shape: '
                                           r'cls\.0\.weight \(128, 640, 3, 3\) vs '
                                           r'\(64, 640, 3, 3\).*fix the network options'):
        build_for_training(_cfg(init=str(DEFAULT_CARD.with_suffix('.safetensors')),
                                head_channels=64), 11)


def test_new_classes_start_only_the_classifier_fresh_and_say_so(capsys):
    cfg, card = with_init_network(_cfg(init=str(DEFAULT_CARD)))
    with pytest.raises(WeightsError, match='pass --new-classes to start the classifier fresh'):
        build_for_training(cfg, 3, card)
    model = build_for_training(dataclasses.replace(cfg, new_classes=True), 3, card)
    out = capsys.readouterr().out
    assert out.endswith('start fresh: aux, cls.4, decoder.fuse.6\n')
    state = load_state_dict(DEFAULT_CARD.with_suffix('.safetensors'))
    own = model.state_dict()
    assert own['cls.4.weight'].shape[0] == 3
    assert torch.equal(own['cls.0.weight'], state['cls.0.weight'])      # the rest is loaded
    with pytest.raises(WeightsError, match='already has 11 classes'):
        build_for_training(dataclasses.replace(cfg, new_classes=True), 11, card)


def test_an_init_card_gives_its_input_size_and_crops_on_its_grid_unless_they_are_set(capsys):
    cfg, card = with_init_network(_cfg(init=str(DEFAULT_CARD)))
    assert (cfg.output_stride, cfg.input_size, cfg.crop_size) == (16, [369, 465], [305, 385])
    assert capsys.readouterr().out.splitlines()[-1] == (
        "init: input_size 369x465, crop_size 305x385 (the card's input, crops about 0.83 of it "
        'on the output-stride grid)')
    cfg, _ = with_init_network(_cfg(init=str(DEFAULT_CARD), input_size=[177, 225]))
    assert (cfg.input_size, cfg.crop_size) == ([177, 225], [145, 193])
    cfg, _ = with_init_network(_cfg(init=str(DEFAULT_CARD), crop_size=[97, 97]))
    assert (cfg.input_size, cfg.crop_size) == ([369, 465], [97, 97])
    assert with_init_network(_cfg())[0].input_size == [281, 377]      # no card: the defaults


def test_adding_a_decoder_needs_its_layers_named_fresh(tmp_path, capsys):
    from pspnet_ros.core.weights import save_safetensors
    plain = build_network(NetworkSpec(11, head_channels=32))
    save_safetensors(plain, tmp_path / 'p.safetensors')
    ModelCard(name='p', weights='p.safetensors', label_set='camvid', num_classes=11,
              input_size=[97, 97], head_channels=32).save(tmp_path / 'p.yaml')
    cfg, card = with_init_network(_cfg(init=str(tmp_path / 'p.yaml'), decoder_channels=8))
    assert (cfg.head_channels, cfg.decoder_channels) == (32, 8)
    with pytest.raises(WeightsError, match=r'missing: decoder\.'):
        build_for_training(cfg, 11, card)
    build_for_training(dataclasses.replace(cfg, fresh_layers='decoder'), 11, card)
    assert capsys.readouterr().out.endswith('; start fresh: aux, decoder\n')


def test_recipes_are_train_config_fields_and_unknown_keys_are_errors(tmp_path):
    (tmp_path / 'r.yaml').write_text('epochs: 3\nlr: 0.002\ninput_size: [97, 129]\n')
    assert load_recipe(tmp_path / 'r.yaml') == {'epochs': 3, 'lr': 0.002,
                                                'input_size': [97, 129]}
    (tmp_path / 'bad.yaml').write_text('epochs: 3\nohem_thresh: 0.7\n')
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown keys \['ohem_thresh'\]"):
        load_recipe(tmp_path / 'bad.yaml')
    (tmp_path / 'size.yaml').write_text('input_size: 97\n')
    with pytest.raises(ValueError, match='input_size must be a list of 2 numbers'):
        load_recipe(tmp_path / 'size.yaml')
    with pytest.raises(FileNotFoundError, match='recipe file not found'):
        load_recipe(tmp_path / 'none.yaml')


def test_flags_override_the_recipe_and_the_card_names_it(tmp_path):
    from pspnet_ros.cli import build_parser
    from pspnet_ros.cli.train import config_from_args
    recipe = tmp_path / 'r.yaml'
    recipe.write_text('train_images: imgs\ntrain_labels: labs\nepochs: 3\nlr: 0.002\n')
    args = build_parser().parse_args(['train', '--config', str(recipe), '--epochs', '5',
                                      '--out', 'o'])
    cfg, rec = config_from_args(args)
    assert (cfg.epochs, cfg.lr, cfg.train_images, cfg.out) == (5, 0.002, 'imgs', 'o')
    assert cfg.batch_size == 8                                       # the default
    assert _reproduce(cfg, rec) == f'pspnet-ros train --config {recipe} --epochs 5 ' \
        '--out train_out'
    args = build_parser().parse_args(['train', '--config', str(recipe)])
    with pytest.raises(ValueError, match='train needs --out'):
        config_from_args(args)


def test_the_shipped_models_recipes_chain_into_its_network():
    from conftest import ROOT
    card = ModelCard.load(DEFAULT_CARD)
    steps = card.reproduce.split(' && ')
    assert len(steps) == 10 and all(s.startswith('pspnet-ros train --config recipes/camvid_')
                                    for s in steps)
    cfgs = []
    for step in steps:
        data = load_recipe(ROOT / step.split()[-1])
        cfg = TrainConfig(**data)
        cfg.validate()
        cfgs.append(cfg)
    assert cfgs[0].init.startswith('tflite:')
    for before, after in zip(cfgs, cfgs[1:]):
        if after.init.startswith('train_out/d/'):
            continue                      # runs F and J both start from run D
        assert after.init == f'{before.out}/pspnet_mobilenetv2_camvid.safetensors'
    last = cfgs[-1]
    assert last.out == 'train_out' and NetworkSpec.of(last, 11) == card.network
    assert (last.input_size, last.mean, last.std) == (card.input_size, card.mean, card.std)
    assert (last.licence, last.training_data) == (card.licence, card.training_data)
