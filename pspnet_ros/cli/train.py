"""``pspnet-ros train``: train or fine-tune PSPNet on image + label folders, from a recipe
file and/or flags."""
from __future__ import annotations

import argparse
import dataclasses
import json


# What each ``train`` flag does (TrainConfig fields); --help appends the default.
TRAIN_HELP = {
    'train_images': 'folder of training images (e.g. ../shared/data/camvid/train)',
    'train_labels': 'folder of label PNGs with the same file stems (class ids)',
    'out': 'output folder: NAME.safetensors, NAME.yaml (model card), checkpoints/',
    'name': 'model name (file stem of the weights and the card)',
    'val_images': 'validation images, scored every --eval-every epochs (optional)',
    'val_labels': 'validation labels',
    'architecture': 'network: pspnet_mobilenetv2, pspnet_resnet18, ...',
    'label_set': 'classes: camvid, cityscapes, voc, ade20k, or a class list file (YAML with '
                 'names, colours and an ignore index, or a labelmap.txt); colour label '
                 'PNGs are mapped to class ids through its colours (docs/TRAINING.md)',
    'head_channels': 'channels of the pyramid pooling head',
    'output_stride': 'backbone output stride: 8, or 16 (MobileNetV2; about half the compute)',
    'decoder_channels': 'width of the skip decoder (MobileNetV2; 0 = none)',
    'decoder_stride': 'stride of the features the skip decoder reads: 8, or 4 (thin objects)',
    'input_size': ('network input height width written to the card: sides of output_stride*k+1 '
                   'keep the features on the input corners (a warning names the nearest); '
                   '48k-7 at stride 8 and 96k-15 at stride 16 also suit the Edge TPU'),
    'crop_size': 'training crop height width',
    'scale_range': 'random rescale range before cropping',
    'epochs': 'passes over the training set',
    'batch_size': 'images per step',
    'lr': 'SGD learning rate of the backbone (poly decay)',
    'head_lr_mult': 'learning rate multiplier for the head',
    'momentum': 'SGD momentum',
    'weight_decay': 'SGD weight decay',
    'aux_weight': "weight of PSPNet's auxiliary loss",
    'class_weighting': 'loss weights per class: none, or sqrt-median (the square root of '
                       'median-frequency weighting)',
    'init': 'initial weights: a model card or its weights (its network, decoder and '
            'strides included, is built and every tensor must load), a checkpoint, or '
            'tflite:FILE for a MobileNetV2 backbone '
            'de-quantised from a Coral file: mobilenet_v2_1.0_224_quant.tflite (ImageNet) or '
            'deeplabv3_mnv2_pascal_quant.tflite (segmentation, PASCAL VOC)',
    'teacher': 'model card of a trained torch model to distil from (frozen; e.g. a model '
               'run at a larger input)',
    'teacher_sizes': 'HxW[,HxW...]: the teacher labels each whole training frame once '
                     'at these input sizes and mirrored (mean probabilities, cached in OUT); '
                     'the targets follow each crop',
    'distill_weight': 'weight of the distillation loss (KL to the teacher; 0 = off)',
    'distill_temperature': 'softmax temperature of the distillation loss',
    'distill_correct': "where the teacher's top class is not the label, mix this share of the "
                       'label into its target (0 = the teacher as is, 1 = the label)',
    'lovasz_weight': 'weight of the Lovasz-softmax loss on the main output (a per-class IoU '
                     'surrogate; 0 = off)',
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
    'licence': 'licence of the trained weights, written to the model card (it follows '
               'your training data and init weights)',
    'training_data': 'what the model was trained on, written to the model card',
    'new_classes': 'start the classifier layers fresh when the --init weights have '
                   'another class count than --label-set (the log names them)',
    'fresh_layers': 'comma-separated module prefixes that start fresh instead of loading '
                    'from --init (e.g. decoder, when adding a decoder)',
}


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` of the defaults, then ``--config`` (a recipe file), then the flags
    given on the command line; returns it with the recipe ``(file, fields)`` or None."""
    from ..training.config import load_recipe, TrainConfig
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values, recipe = {}, None
    if args.config:
        recipe = (args.config, load_recipe(args.config))
        values.update(recipe[1])
    values.update({k: v for k, v in vars(args).items() if k in fields})
    missing = [f'--{k.replace("_", "-")}' for k in ('train_images', 'train_labels', 'out')
               if k not in values]
    if missing:
        raise ValueError(f'train needs {", ".join(missing)} (as flags or in the --config '
                         'recipe)')
    return TrainConfig(**values), recipe


def cmd_train(args) -> int:
    from ..training.loop import train
    cfg, recipe = config_from_args(args)
    metrics = train(cfg, resume=not args.no_resume, progress=not args.no_progress,
                    recipe=recipe)
    print(json.dumps(metrics, indent=1))
    return 0


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field; a flag not given leaves the recipe's value (or the
    default), so the command line overrides the file."""
    from ..training.config import TrainConfig
    for f in dataclasses.fields(TrainConfig):
        flag = '--' + f.name.replace('_', '-')
        text = TRAIN_HELP.get(f.name, '')
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            p.add_argument(flag, default=argparse.SUPPRESS,
                           help=f'{text} (required, here or in the recipe)')
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            p.add_argument(flag, action='store_true', default=argparse.SUPPRESS, help=text)
        elif isinstance(default, list):
            p.add_argument(flag, nargs=len(default), type=type(default[0]),
                           default=argparse.SUPPRESS,
                           help=f'{text} (default: {" ".join(map(str, default))})')
        else:
            p.add_argument(flag, type=type(default), default=argparse.SUPPRESS,
                           help=f'{text} (default: {default!r})')


def register(sub) -> None:
    p = sub.add_parser('train', help='train or fine-tune PSPNet on image + label folders',
                       description='Train or fine-tune PSPNet on an image folder and a label '
                       'folder (e.g. CamVid). Options come from --config RECIPE.yaml (the '
                       'fields below, with _ for -) and the flags, which override the file. '
                       'Resumes from OUT/checkpoints/last.pt; writes the weights and a model '
                       'card with the command that reproduces them (docs/TRAINING.md).')
    p.add_argument('--config', default='', help='recipe file: TrainConfig fields as YAML '
                   '(e.g. recipes/camvid_d.yaml); flags given here override it')
    _add_config_flags(p)
    p.add_argument('--no-resume', action='store_true', help='ignore out/checkpoints/last.pt')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.set_defaults(func=cmd_train)
