"""The occupancy PointCloud2 layout: exact fields, round trip, and a rosbags round trip."""
import numpy as np
import pytest

from pspnet_ros.core.occupancy_msg import (decode_occupancy, encode_occupancy, FLOAT32,
                                           occupancy_fields, UINT32)
from eval_helpers import read_all
from pspnet_ros.evaluation.bagio import BagWriter, cloud_msg, make_header


def test_field_layout_is_box_pixels_fractions_then_counts():
    fields = occupancy_fields(['road', 'car'])
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ('x0', 0, FLOAT32, 1), ('y0', 4, FLOAT32, 1), ('x1', 8, FLOAT32, 1),
        ('y1', 12, FLOAT32, 1), ('pixels', 16, UINT32, 1), ('road', 20, FLOAT32, 1),
        ('car', 24, FLOAT32, 1), ('road_count', 28, UINT32, 1), ('car_count', 32, UINT32, 1)]


def test_class_names_that_collide_with_fields_are_refused():
    with pytest.raises(ValueError, match=r"class names \['pixels'\] collide"):
        occupancy_fields(['pixels', 'road'])


def test_whole_frame_first_then_regions_round_trip_through_a_bag(tmp_path):
    cloud = encode_occupancy(['road', 'car'], np.array([30, 10]),
                             [((0.0, 0.5, 1.0, 1.0), np.array([20, 0]))])
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 2, 36, 72)
    with BagWriter(tmp_path / 'b', 'mcap') as bag:
        bag.write('/occ', cloud_msg(bag.ts, make_header(bag.ts, 5, 'cam'), cloud), 5)
    [(topic, _, msg)] = read_all(tmp_path / 'b')
    assert msg.__msgtype__ == 'sensor_msgs/msg/PointCloud2' and msg.header.frame_id == 'cam'
    whole, lower = decode_occupancy(msg.fields, msg.height, msg.width, msg.point_step,
                                    bytes(msg.data), msg.is_bigendian)
    assert whole.box == (0.0, 0.0, 1.0, 1.0) and whole.pixels == 40
    assert whole.counts == {'road': 30, 'car': 10}
    assert whole.fractions == {'road': 0.75, 'car': 0.25}
    assert lower.box == (0.0, 0.5, 1.0, 1.0)
    assert (lower.pixels, lower.fractions, lower.counts) == (20, {'road': 1.0, 'car': 0.0},
                                                             {'road': 20, 'car': 0})
