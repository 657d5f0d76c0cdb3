"""Rosbag evaluation: replay bags through the Segmenter, score against labels, write bags."""
