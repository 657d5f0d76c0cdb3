"""The ROS 2 segmentation node: lifecycle shell, parameters, message conversions, stats."""
