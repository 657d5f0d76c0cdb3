"""The ROS-free runtime: model, labels, pre/post-processing, Segmenter, backends, metrics.

Nothing under ``pspnet_ros.core`` imports rclpy or ROS message packages (a test checks).
The names below load on first use, so ``pspnet_ros.core.threads`` can set up the thread
pools before numpy and torch load (``configure_threads``).
"""
import importlib

_EXPORTS = {
    'ModelCard': '.card', 'ModelCardError': '.card',
    'ImageError': '.image', 'ensure_rgb8': '.image', 'read_image': '.image',
    'LabelSet': '.labels', 'get_label_set': '.labels',
    'Occupancy': '.segmenter', 'SegmentationResult': '.segmenter', 'Segmenter': '.segmenter',
    'default_card_path': '.files',
    'shipped_file': '.files', 'IMAGE_EXTS': '.files', 'list_images': '.files',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
