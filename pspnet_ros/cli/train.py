"""``pspnet-ros train``: train or fine-tune PSPNet on image + label folders."""
from __future__ import annotations

import dataclasses
import json

from .common import add_dataclass_args


# What each ``train`` flag does (TrainConfig fields); --help appends the default.
TRAIN_HELP = {
    'train_images': 'folder of training images (e.g. ../shared/data/camvid/train)',
    'train_labels': 'folder of label PNGs with the same file stems (class ids)',
    'out': 'output folder: NAME.safetensors, NAME.yaml (model card), checkpoints/',
    'name': 'model name (file stem of the weights and the card)',
    'val_images': 'validation images, scored every --eval-every epochs (optional)',
    'val_labels': 'validation labels',
    'architecture': 'network: pspnet_mobilenetv2, pspnet_resnet18, ...',
    'label_set': 'class names and palette (camvid, cityscapes, voc, ade20k)',
    'head_channels': 'channels of the pyramid pooling head',
    'output_stride': 'backbone output stride: 8, or 16 (MobileNetV2; about half the compute)',
    'decoder_channels': 'width of the skip decoder (MobileNetV2; 0 = none)',
    'decoder_stride': 'stride of the features the skip decoder reads: 8, or 4 (thin objects)',
    'input_size': 'network input height width written to the card (48k-7 suits Edge TPU)',
    'crop_size': 'training crop height width',
    'scale_range': 'random rescale range before cropping',
    'epochs': 'passes over the training set',
    'batch_size': 'images per step',
    'lr': 'SGD learning rate of the backbone (poly decay)',
    'head_lr_mult': 'learning rate multiplier for the head',
    'momentum': 'SGD momentum',
    'weight_decay': 'SGD weight decay',
    'aux_weight': "weight of PSPNet's auxiliary loss",
    'class_weighting': 'loss weights per class: none, median, sqrt-median',
    'init': 'initial weights: a checkpoint, or tflite:FILE for a MobileNetV2 backbone '
            'de-quantised from a Coral file: mobilenet_v2_1.0_224_quant.tflite (ImageNet) or '
            'deeplabv3_mnv2_pascal_quant.tflite (segmentation, PASCAL VOC)',
    'teacher': 'model card of a trained torch model to distil from (frozen; e.g. a model '
               'run at a larger input)',
    'teacher_input_scale': 'the teacher sees each training batch resized by this factor',
    'teacher_sizes': 'HxW[,HxW...]: instead, the teacher labels each whole training frame once '
                     'at these input sizes and mirrored (mean probabilities, cached in OUT); '
                     'the targets follow each crop',
    'distill_weight': 'weight of the distillation loss (KL to the teacher; 0 = off)',
    'distill_temperature': 'softmax temperature of the distillation loss',
    'distill_correct': "where the teacher's top class is not the label, mix this share of the "
                       'label into its target (0 = the teacher as is, 1 = the label)',
    'lovasz_weight': 'weight of the Lovasz-softmax loss on the main output (a per-class IoU '
                     'surrogate; 0 = off)',
    'ohem_thresh': 'online hard example mining: the cross-entropy counts only pixels whose '
                   "label's probability is at most this (0 = off; PSPNet used 0.7)",
    'ohem_min_kept': 'with --ohem-thresh: keep at least this many pixels per batch (the '
                     'hardest)',
    'paste_prob': 'copy-paste augmentation: the share of training frames that get the '
                  '--paste-classes pixels of another training frame, mirrored and shifted '
                  'sideways (0 = off)',
    'paste_classes': 'with --paste-prob: comma-separated class names to paste',
    'mean': 'per-channel mean subtracted from RGB input',
    'std': 'per-channel std dividing RGB input',
    'seed': 'random seed (runs are deterministic)',
    'threads': 'CPU threads (0 = all)',
    'device': 'auto (the first CUDA GPU if torch sees one, else cpu), cpu, cuda or cuda:N',
    'amp': 'auto: float16 mixed precision (autocast and loss scaling) on CUDA; off: float32',
    'eval_every': 'validate every N epochs',
    'max_iters_per_epoch': 'cap steps per epoch (0 = the whole set)',
    'stop_after': 'stop after N epochs of this run, keeping the checkpoint; the same command '
                  'resumes (0 = run to --epochs)',
    'licence': 'licence written to the model card',
    'training_data': 'training data description written to the model card',
}


def cmd_train(args) -> int:
    from ..core.train import TrainConfig, train
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    metrics = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(json.dumps(metrics, indent=1))
    return 0


def register(sub) -> None:
    from ..core.train import TrainConfig
    p = sub.add_parser('train', help='train or fine-tune PSPNet on image + label folders',
                       description='Train or fine-tune PSPNet on an image folder and a label '
                       'folder (e.g. CamVid). Resumes from OUT/checkpoints/last.pt; writes '
                       'the weights and a model card with the command that reproduces them.')
    add_dataclass_args(p, TrainConfig, TRAIN_HELP)
    p.add_argument('--no-resume', action='store_true', help='ignore out/checkpoints/last.pt')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.set_defaults(func=cmd_train)
