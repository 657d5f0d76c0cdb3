"""What a frame publishes: the outputs a camera's subscribers and the settings want, and
their messages, published with the frame's own header (the publishing thread of
``inference.FramePath``, and the warm-up)."""
from __future__ import annotations

from ..core.segmenter import overlay
from .convert import float_to_msg, labels_to_msg, occupancy_to_msg, rgb_to_msg

OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence', 'occupancy', 'camera_info')


def wanted_outputs(cam, cfg, ground) -> dict[str, bool]:
    """The outputs ``cam``'s frame is to publish: those with subscribers that the settings
    ``cfg`` allow, and ``ground`` when the ground grid (or None) has subscribers."""
    want = {n: cam.wanted(n) for n in OUTPUTS}
    want['color_mask'] &= cfg.publish_color_mask
    want['overlay'] &= cfg.publish_overlay
    want['confidence'] &= cfg.publish_confidence
    want['ground'] = ground is not None and ground.wanted()
    return want


def publish(cam, header, rgb, want: dict, res, seg, cfg) -> None:
    """Publish one frame's wanted outputs on ``cam``'s publishers with the input header."""
    pubs = cam.pubs
    if want['mask']:
        pubs['mask'].publish(labels_to_msg(res.labels, header))
    if want['color_mask'] or want['overlay']:
        color = seg.colorize(res.labels)
        if want['color_mask']:
            pubs['color_mask'].publish(rgb_to_msg(color, header))
        if want['overlay']:
            pubs['overlay'].publish(rgb_to_msg(overlay(rgb, color, cfg.overlay_alpha),
                                               header))
    if want['confidence']:
        pubs['confidence'].publish(float_to_msg(res.confidence, header))
    if want['occupancy']:
        pubs['occupancy'].publish(occupancy_to_msg(res.occupancy, seg.class_names,
                                                   cfg.regions, header))
    if want['camera_info'] and cam.camera_info is not None:
        info = cam.camera_info
        info.header = header
        pubs['camera_info'].publish(info)
