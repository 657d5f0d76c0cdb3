"""ROS-free core: model, labels, pre/post-processing, Segmenter, backends, metrics, training.

Nothing under ``pspnet_ros.core`` imports rclpy or ROS message packages (a test checks).
"""
from .card import ModelCard, ModelCardError
from .image import ImageError, ensure_rgb8, read_image
from .labels import LabelSet, get_label_set
from .segmenter import Occupancy, SegmentationResult, Segmenter, default_card_path

__all__ = ['ImageError', 'LabelSet', 'ModelCard', 'ModelCardError', 'Occupancy',
           'SegmentationResult', 'Segmenter', 'default_card_path', 'ensure_rgb8',
           'get_label_set', 'read_image']
