"""Compressed frames: decoder messages are returned with the frame, never printed by us, and
stderr is never redirected."""

import cv2
import numpy as np
import pytest

from pspnet_ros.core.image import ImageError
from pspnet_ros.core.rosimage import compressed_to_rgb


def _jpeg() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    return cv2.imencode('.jpg', img)[1].tobytes()


def test_a_damaged_jpeg_decodes_and_its_decoder_message_is_returned_not_printed(capfd):
    data = bytearray(_jpeg())
    mid = len(data) // 2
    data[mid:mid + 50] = b'\xff' * 50          # libjpeg: "premature end of data segment"
    said = []
    rgb = compressed_to_rgb('jpeg', bytes(data), warnings=said)
    assert rgb.shape == (120, 160, 3)
    assert said == ['Corrupt JPEG data: premature end of data segment']
    # The structure check finds the damage without touching stderr (issue 34: no fd-2
    # redirection); libjpeg itself still prints its first warning, one line per frame.
    assert capfd.readouterr().err in ('', 'Corrupt JPEG data: premature end of data segment\n')


def test_an_undecodable_png_names_the_decoder_message_in_the_error(capfd):
    png = bytearray(cv2.imencode('.png', np.zeros((40, 60, 3), np.uint8))[1].tobytes())
    png[60] ^= 0xff                            # damages the compressed pixel data
    with pytest.raises(ImageError, match=r'could not decode the 60x40 image; the data is '
                                         r'truncated or corrupt \(IDAT: '
                                         r'incorrect data check\)'):
        compressed_to_rgb('png', bytes(png))
    assert capfd.readouterr().err == ''


def test_decoding_never_redirects_stderr(monkeypatch):
    import os

    def refuse(*args):
        raise AssertionError('os.dup2 called while decoding')
    damaged = bytearray(_jpeg())
    damaged[len(damaged) // 2:len(damaged) // 2 + 50] = b'\xff' * 50
    clean, bad = [], []
    with monkeypatch.context() as patch:
        patch.setattr(os, 'dup2', refuse)
        compressed_to_rgb('jpeg', _jpeg(), warnings=clean)
        compressed_to_rgb('jpeg', bytes(damaged), warnings=bad)
    assert clean == [] and bad == ['Corrupt JPEG data: premature end of data segment']
