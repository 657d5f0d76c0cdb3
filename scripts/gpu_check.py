"""GPU check: torch CUDA fp16 parity and PSPNet-ResNet50 fp32 vs fp16 + channels_last + graphs."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pspnet_ros.core.backends.torch_backend import TorchBackend  # noqa: E402
from pspnet_ros.core.card import ModelCard  # noqa: E402
from pspnet_ros.core.model import PSPNet  # noqa: E402

SIZES = ((473, 473), (512, 1024))
BATCHES = (1, 4)
TARGET_SPEEDUP = 4.0


def write_json(report: dict) -> None:
    out = os.environ.get('OUT')
    if out:
        path = Path(out) / 'gpu_check.json'
        path.write_text(json.dumps(report, indent=1))
        print(f'wrote {path}')


def resnet50_card(size: tuple[int, int]) -> ModelCard:
    return ModelCard(name='pspnet_resnet50_random', weights='', label_set='ade20k',
                     num_classes=150, input_size=list(size), architecture='pspnet_resnet50')


def random_resnet50() -> PSPNet:
    torch.manual_seed(0)
    model = PSPNet('pspnet_resnet50', 150, aux=False).eval()
    # Random-init BN statistics make activations explode through 50 layers; give them
    # plausible running stats so fp16 parity is meaningful.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(2.0)
    return model


def parity(device: str, frames: Path) -> dict:
    """fp16 + channels_last vs fp32 argmax agreement and max |dlogit|."""
    out = {}
    size = (473, 473)
    card = resnet50_card(size)
    x = np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32)
    ref = TorchBackend(card, device, model=random_resnet50()).run(x)
    fast = TorchBackend(card, device, fp16=True, channels_last=True, cuda_graphs=True,
                        model=random_resnet50()).run(x)
    out['resnet50_random'] = {'agreement': float((ref.argmax(1) == fast.argmax(1)).mean()),
                              'max_abs_dlogit': float(np.abs(ref - fast).max()),
                              'logit_abs_max': float(np.abs(ref).max())}
    default = ROOT / 'models' / 'pspnet_mobilenetv2_camvid.yaml'
    if default.is_file() and frames.is_dir():
        from pspnet_ros.core import Segmenter, read_image
        cpu = Segmenter(default, device='cpu')
        a = Segmenter(default, device=device)
        b = Segmenter(default, device=device, backend_options={
            'fp16': True, 'channels_last': True, 'cuda_graphs': True})
        agree, agree_cpu = [], []
        for p in sorted(frames.glob('*.png'))[:8]:
            img = read_image(p)
            ref = a(img).labels
            agree.append(float((ref == b(img).labels).mean()))
            agree_cpu.append(float((ref == cpu(img).labels).mean()))
        # fp16+channels_last+graphs vs fp32 on the GPU, and GPU fp32 vs the CPU (same YAML,
        # other accelerator: the labels should match).
        out['default_card_camvid_val'] = {'frames': len(agree), 'agreement': float(np.mean(agree)),
                                          'cuda_fp32_vs_cpu_agreement': float(np.mean(agree_cpu))}
    return out


def time_backend(backend: TorchBackend, batch: int, size: tuple[int, int],
                 budget_s: float) -> dict:
    x = torch.randn(batch, 3, *size, device=backend.device).to(backend.dtype).contiguous(
        memory_format=backend.memory_format)
    for _ in range(3):
        backend.run_tensor(x)
    torch.cuda.synchronize()
    times = []
    start = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        backend.run_tensor(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {'iters': len(times), 'median_ms': 1e3 * med,
            'p90_ms': 1e3 * float(np.percentile(times, 90)), 'images_per_s': batch / med}


# name -> (TF32 convolutions, TorchBackend options). The baseline is the plain model in true
# fp32; PyTorch's default (cuDNN convolutions in TF32) is measured beside it.
VARIANTS = {
    'fp32_eager': (False, {'fuse_bn': False}),
    'fp32_eager_tf32_default': (True, {'fuse_bn': False}),
    'fp16_channels_last_graphs': (True, {'fp16': True, 'channels_last': True,
                                         'cuda_graphs': True}),
    'fp16_graphs': (True, {'fp16': True, 'cuda_graphs': True}),
    'fp16_channels_last_eager': (True, {'fp16': True, 'channels_last': True}),
}
FAST = 'fp16_channels_last_graphs'


def set_tf32(on: bool) -> None:
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def bench(device: str, budget_s: float, use_compile: bool) -> list[dict]:
    rows = []
    for size in SIZES:
        card = resnet50_card(size)
        backends = {}
        for name, (tf32, opts) in VARIANTS.items():
            opts = dict(opts)
            if use_compile and opts.pop('cuda_graphs', False):
                opts['compile'] = 'max-autotune-no-cudagraphs'
            backends[name] = (tf32, TorchBackend(card, device, model=random_resnet50(), **opts))
        for batch in BATCHES:
            row = {'input_size': list(size), 'batch': batch}
            for name, (tf32, backend) in backends.items():
                set_tf32(tf32)
                row[name] = time_backend(backend, batch, size, budget_s)
            set_tf32(True)
            fast = row[FAST]['images_per_s']
            row['speedup'] = fast / row['fp32_eager']['images_per_s']
            row['speedup_vs_tf32_default'] = fast / row['fp32_eager_tf32_default']['images_per_s']
            row['target_met'] = row['speedup'] >= TARGET_SPEEDUP
            rows.append(row)
            verdict = 'met' if row['target_met'] else 'NOT met'
            print(f'{size[0]}x{size[1]} batch {batch}: ' + ', '.join(
                f'{n} {row[n]["images_per_s"]:.1f}' for n in VARIANTS) + ' img/s; '
                f'{FAST} {row["speedup"]:.2f}x fp32 eager ({verdict}, target '
                f'{TARGET_SPEEDUP}x), {row["speedup_vs_tf32_default"]:.2f}x the TF32 default',
                flush=True)
        del backends
        torch.cuda.empty_cache()
    return rows


def profile(device: str, size: tuple[int, int] = (512, 1024)) -> None:
    """Print the kernels that take the GPU time, fp32 eager vs fp16 channels_last eager."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    card = resnet50_card(size)
    for name in ('fp32_eager', 'fp16_channels_last_eager'):
        tf32, opts = VARIANTS[name]
        set_tf32(tf32)
        backend = TorchBackend(card, device, model=random_resnet50(), **opts)
        x = torch.randn(1, 3, *size, device=device).to(backend.dtype).contiguous(
            memory_format=backend.memory_format)
        for _ in range(3):
            backend.run_tensor(x)
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                backend.run_tensor(x)
            torch.cuda.synchronize()
        print(f'--- profile {name} {size[0]}x{size[1]} batch 1 (5 runs)')
        print(prof.key_averages().table(sort_by='self_device_time_total', row_limit=14,
                                        max_name_column_width=70))
    set_tf32(True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--device', default='cuda')
    p.add_argument('--budget-s', type=float, default=4.0, help='timing seconds per case')
    p.add_argument('--compile', action='store_true', help='torch.compile instead of graphs')
    p.add_argument('--profile', action='store_true', help='print the top GPU kernels')
    p.add_argument('--frames', default=str(ROOT.parent / 'shared' / 'data' / 'camvid' / 'val'),
                   help='real frames for the default-model parity check (default: CamVid val '
                   'in ../shared; skipped when absent)')
    args = p.parse_args(argv)
    report = {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'torch': torch.__version__}
    if not torch.cuda.is_available():
        # The CPU-safe part: the model builds and the backend runs its fp32 path.
        card = resnet50_card((65, 65))
        out = TorchBackend(card, 'cpu', fp16=True, channels_last=True,
                           model=random_resnet50()).run(np.zeros((1, 3, 65, 65), np.float32))
        report.update(cuda=False, status='skipped', cpu_smoke_output_shape=list(out.shape),
                      reason='torch.cuda.is_available() is False (no NVIDIA GPU/driver, or a '
                      'CPU-only torch build); nothing to measure')
        print(f'gpu_check: {report["reason"]}. CPU smoke test passed (PSPNet-ResNet50 logits '
              f'{tuple(out.shape)}).')
        write_json(report)
        return 0
    torch.backends.cudnn.benchmark = True
    report.update(cuda=True, device_name=torch.cuda.get_device_name(args.device))
    print(f'gpu_check on {report["device_name"]}, torch {torch.__version__}', flush=True)
    report['parity'] = parity(args.device, Path(args.frames))
    print('parity:', json.dumps(report['parity']), flush=True)
    if args.profile:
        try:
            profile(args.device)
        except Exception as exc:  # a diagnostic only: the measurements below still run
            print(f'profile failed: {exc!r}', flush=True)
    report['bench'] = bench(args.device, args.budget_s, args.compile)
    report['target_speedup'] = TARGET_SPEEDUP
    report['all_targets_met'] = all(r['target_met'] for r in report['bench'])
    write_json(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
