"""Shape tests for the PSPNet modules (mmsegmentation style: tiny CPU inputs)."""
import pytest
import torch
from torch import nn

from pspnet_ros.core.model import PPM, PSPNet


@pytest.mark.parametrize('arch,aux_in,fea', [('pspnet_resnet18', 256, 512),
                                             ('pspnet_mobilenetv2', 96, 320)])
def test_pspnet_output_matches_input_size_and_stride_is_8(arch, aux_in, fea):
    model = PSPNet(arch, num_classes=7, head_channels=32).eval()
    x = torch.randn(1, 3, 89, 121)
    with torch.no_grad():
        out, aux = model(x, return_aux=True)
        logits = model.forward_logits(x)
    assert out.shape == (1, 7, 89, 121)
    assert aux.shape == (1, 7, 89, 121)
    assert logits.shape == (1, 7, 12, 16)      # (89-1)/8+1, (121-1)/8+1
    assert model.aux[0].in_channels == aux_in
    assert model.ppm.features[0][1].in_channels == fea


def test_resnet50_layout_matches_semseg_dimensions():
    model = PSPNet('pspnet_resnet50', num_classes=150)
    assert model.layer0[6].out_channels == 128
    assert model.cls[0].in_channels == 4096 and model.cls[0].out_channels == 512
    assert model.aux[0].in_channels == 1024 and model.aux[0].out_channels == 256
    assert model.layer3[0].conv2.dilation == (2, 2) and model.layer3[0].conv2.stride == (1, 1)
    assert model.layer4[2].conv2.dilation == (4, 4)


def test_ppm_concatenates_four_bins():
    ppm = PPM(32, 8, (1, 2, 3, 6)).eval()
    assert ppm(torch.randn(2, 32, 18, 18)).shape == (2, 64, 18, 18)


# Inputs whose pyramid-pool features divide by every bin (a clean int8 Edge TPU graph):
# 48k-7 at output stride 8, 96k-15 at output stride 16; both give 6k feature cells.
@pytest.mark.parametrize('stride,k', [(8, 6), (8, 8), (8, 10), (16, 4), (16, 5), (16, 6)])
def test_inputs_of_the_edgetpu_forms_give_features_divisible_by_6(stride, k):
    model = PSPNet('pspnet_mobilenetv2', 3, head_channels=16, aux=False,
                   output_stride=stride).eval()
    n = 48 * k - 7 if stride == 8 else 96 * k - 15
    with torch.no_grad():
        f = model.layer4(model.layer3(model.layer2(model.layer1(model.layer0(
            torch.zeros(1, 3, n, n))))))
    assert f.shape[-1] == 6 * k


def test_every_relu_module_is_used_once():
    model = PSPNet('pspnet_resnet18', 5, head_channels=16)
    relus = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert len(relus) == len({id(m) for m in relus})


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match='unknown architecture'):
        PSPNet('pspnet_vgg16', 3)
    with pytest.raises(ValueError, match='ResNet depth'):
        PSPNet('pspnet_resnet34', 3)


def test_output_stride_16_halves_the_grid_and_the_decoder_returns_to_stride_8():
    x = torch.randn(1, 3, 89, 121)
    plain = PSPNet('pspnet_mobilenetv2', 7, head_channels=32, output_stride=16).eval()
    dec = PSPNet('pspnet_mobilenetv2', 7, head_channels=32, output_stride=16,
                 decoder_channels=16).eval()
    with torch.no_grad():
        assert plain.forward_logits(x).shape == (1, 7, 6, 8)     # ceil(89/16), ceil(121/16)
        assert dec.forward_logits(x).shape == (1, 7, 12, 16)     # layer2's stride-8 grid
        out, aux = dec(x, return_aux=True)
    assert out.shape == aux.shape == (1, 7, 89, 121)
    # Stride 16 keeps MobileNetV2's own stride on the 64-channel stage; stride 8 dilates it.
    assert plain.layer3[0].conv[3].stride == (2, 2)
    assert plain.layer4[1].conv[3].dilation == (2, 2)
    assert PSPNet('pspnet_mobilenetv2', 7).layer4[1].conv[3].dilation == (4, 4)


def _with_new_decoder(trained: nn.Module, **layout) -> PSPNet:
    """A network of ``layout`` given ``trained``'s weights, where only the decoder is new."""
    dec = PSPNet('pspnet_mobilenetv2', 5, head_channels=16, aux=False, **layout).eval()
    missing, unexpected = dec.load_state_dict(trained.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith('decoder.') for k in missing)
    return dec


def test_one_checkpoint_runs_at_both_strides_and_a_new_decoder_starts_from_its_output():
    os8 = PSPNet('pspnet_mobilenetv2', 5, head_channels=16, aux=False).eval()
    os16 = PSPNet('pspnet_mobilenetv2', 5, head_channels=16, aux=False,
                  output_stride=16).eval()
    assert os8.state_dict().keys() == os16.state_dict().keys()
    for p in os8.parameters():                  # non-zero everywhere: a real comparison
        nn.init.normal_(p, std=0.1)
    os16.load_state_dict(os8.state_dict())
    dec = _with_new_decoder(os8, output_stride=16, decoder_channels=8)
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        coarse = os16.forward_logits(x)
        refined = dec.forward_logits(x)
    expected = nn.functional.interpolate(coarse, refined.shape[-2:], mode='bilinear',
                                         align_corners=True)
    assert coarse.abs().max() > 0.01
    torch.testing.assert_close(refined, expected, rtol=0, atol=1e-5)


def test_a_stride_4_decoder_reads_layer1_and_starts_from_the_stride_8_network():
    torch.manual_seed(0)
    base = PSPNet('pspnet_mobilenetv2', 5, head_channels=16, aux=False).eval()
    for p in base.parameters():
        nn.init.normal_(p, std=0.1)
    dec = _with_new_decoder(base, decoder_channels=8, decoder_stride=4)
    assert dec.decoder.skip[0].in_channels == 24             # layer1's channels
    x = torch.randn(1, 3, 89, 121)
    with torch.no_grad():
        coarse = base.forward_logits(x)
        refined = dec.forward_logits(x)
        assert coarse.shape == (1, 5, 12, 16)                # ceil(89/8), ceil(121/8)
        assert refined.shape == (1, 5, 23, 31)               # ceil(89/4), ceil(121/4)
        expected = nn.functional.interpolate(coarse, (23, 31), mode='bilinear',
                                             align_corners=True)
        torch.testing.assert_close(refined, expected, rtol=0, atol=1e-5)
        # Once the decoder is trained (its last conv no longer zero), its correction shows.
        for p in dec.decoder.parameters():
            nn.init.normal_(p, std=0.1)
        assert (dec.forward_logits(x) - expected).abs().max() > 0.01
        assert dec(x).shape == (1, 5, 89, 121)


def test_unsupported_strides_and_decoders_are_clear_errors():
    with pytest.raises(ValueError, match='output_stride must be one of'):
        PSPNet('pspnet_mobilenetv2', 3, output_stride=32)
    with pytest.raises(ValueError, match='pspnet_mobilenetv2 only'):
        PSPNet('pspnet_resnet18', 3, output_stride=16)
    with pytest.raises(ValueError, match='pspnet_mobilenetv2 only'):
        PSPNet('pspnet_resnet18', 3, decoder_channels=8)
    with pytest.raises(ValueError, match='decoder_channels must be >= 0'):
        PSPNet('pspnet_mobilenetv2', 3, decoder_channels=-1)
    with pytest.raises(ValueError, match='decoder_stride must be one of'):
        PSPNet('pspnet_mobilenetv2', 3, decoder_channels=8, decoder_stride=2)
    with pytest.raises(ValueError, match=r'decoder_stride 4 needs a decoder \(decoder_channels'):
        PSPNet('pspnet_mobilenetv2', 3, decoder_stride=4)
