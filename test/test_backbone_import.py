"""MobileNetV2 backbones de-quantised from Coral's TFLite files compute what the files compute."""
import cv2
import numpy as np
import pytest
import torch

from pspnet_ros.core import read_image
from pspnet_ros.core.model import PSPNet
from pspnet_ros.training.convert import import_mobilenetv2_tflite


def test_deeplab_backbone_imports_and_matches_the_tflite_activations(coral, camvid):
    """Segmentation-trained MobileNetV2 of Coral's DeepLabv3 (PASCAL VOC): all 51 convs map, and
    the stride-8 features (before any dilation, so both networks compute the same thing)
    match the quantised file's own activations on a real frame."""
    interpreter_mod = pytest.importorskip('ai_edge_litert.interpreter',
                                          reason='ai-edge-litert not installed')
    path = str(coral / 'deeplabv3_mnv2_pascal_quant.tflite')
    interp = interpreter_mod.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    img = cv2.resize(read_image(camvid / 'val' / '0016E5_07959.png'), (513, 513))
    interp.set_tensor(inp['index'], img[None])
    interp.invoke()
    out = next(d for d in interp.get_tensor_details()
               if d['name'] == 'MobilenetV2/expanded_conv_5/add')
    scale, zero = out['quantization']
    ref = (interp.get_tensor(out['index'])[0].astype(np.float32) - zero) * scale

    model = PSPNet('pspnet_mobilenetv2', 11, head_channels=16).eval()
    imagenet = PSPNet('pspnet_mobilenetv2', 11, head_channels=16).eval()
    assert import_mobilenetv2_tflite(model, path) == 51
    import_mobilenetv2_tflite(imagenet, str(coral / 'mobilenet_v2_1.0_224_quant.tflite'))
    in_scale, in_zero = inp['quantization']
    x = torch.from_numpy(((img.astype(np.float32) - in_zero) * in_scale).transpose(2, 0, 1)[None]
                         .copy())
    with torch.no_grad():
        ours = model.layer2(model.layer1(model.layer0(x)))[0].numpy().transpose(1, 2, 0)
        other = imagenet.layer2(imagenet.layer1(imagenet.layer0(x)))[0].numpy().transpose(
            1, 2, 0)
    assert ours.shape == ref.shape == (65, 65, 32)
    # int8 activations vs float maths on the de-quantised weights: 0.996 measured.
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99
    # ... and the weights are DeepLab's own, not the ImageNet classifier's.
    assert np.corrcoef(other.ravel(), ref.ravel())[0, 1] < 0.9
