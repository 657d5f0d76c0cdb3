"""pspnet_ros: PSPNet semantic segmentation for ROS 2 with pluggable accelerator backends."""

__version__ = '0.3.1'
