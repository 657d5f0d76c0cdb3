"""ROS image message fields <-> numpy: every encoding exactly, and hostile headers refused."""
import cv2
import numpy as np
import pytest

from pspnet_ros.core.image import ImageError
from pspnet_ros.core.rosimage import (compressed_to_labels, compressed_to_rgb, image_to_labels,
                                      image_to_rgb, labels_to_image_fields, rgb_to_compressed,
                                      rgb_to_image_fields)

# A 2x3 RGB image with distinct known values.
RGB = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                [[10, 11, 12], [13, 14, 15], [16, 17, 18]]], np.uint8)


def test_rgb8_with_step_padding_drops_the_padding():
    rows = [bytes(RGB[0].reshape(-1)) + b'\xee\xee', bytes(RGB[1].reshape(-1)) + b'\xee\xee']
    out = image_to_rgb(2, 3, 'rgb8', 0, 11, b''.join(rows))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert np.array_equal(out, RGB)


def test_bgr8_is_reordered_to_rgb():
    data = RGB[:, :, ::-1].tobytes()
    assert np.array_equal(image_to_rgb(2, 3, 'bgr8', 0, 9, data), RGB)


def test_rgba8_and_bgra8_drop_alpha():
    alpha = np.full((2, 3, 1), 200, np.uint8)
    rgba = np.concatenate([RGB, alpha], axis=2).tobytes()
    bgra = np.concatenate([RGB[:, :, ::-1], alpha], axis=2).tobytes()
    assert np.array_equal(image_to_rgb(2, 3, 'rgba8', 0, 12, rgba), RGB)
    assert np.array_equal(image_to_rgb(2, 3, 'bgra8', 0, 12, bgra), RGB)


def test_mono8_is_replicated_to_three_channels():
    out = image_to_rgb(2, 3, 'mono8', 0, 3, bytes([0, 1, 2, 3, 4, 255]))
    assert out[:, :, 0].tolist() == [[0, 1, 2], [3, 4, 255]]
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_mono16_big_and_little_endian_scale_to_the_high_byte():
    values = np.array([[0x0102, 0xFF00, 0x8081], [0x0000, 0x00FF, 0xFFFF]], np.uint16)
    big = values.astype('>u2').tobytes()
    little = values.astype('<u2').tobytes()
    expect = [[0x01, 0xFF, 0x80], [0x00, 0x00, 0xFF]]
    assert image_to_rgb(2, 3, 'mono16', 1, 6, big)[:, :, 1].tolist() == expect
    assert image_to_rgb(2, 3, 'mono16', 0, 6, little)[:, :, 1].tolist() == expect


def test_16uc1_labels_keep_full_values_in_both_byte_orders():
    values = np.array([[0, 1, 300], [65535, 11, 256]], np.uint16)
    for big, dt in ((1, '>u2'), (0, '<u2')):
        padded = b''.join(values[r].astype(dt).tobytes() + b'\x00\x00' for r in range(2))
        out = image_to_labels(2, 3, '16UC1', big, 8, padded)
        assert out.dtype == np.uint16 and out.tolist() == values.tolist()


def test_mono8_labels_are_class_ids():
    out = image_to_labels(2, 3, 'mono8', 0, 4, bytes([0, 1, 2, 9, 3, 4, 11, 9]))
    assert out.dtype == np.uint8 and out.tolist() == [[0, 1, 2], [3, 4, 11]]


@pytest.mark.parametrize('encoding, code, swap', [
    ('uyvy', cv2.COLOR_YUV2RGB_UYVY, False), ('yuv422', cv2.COLOR_YUV2RGB_UYVY, False),
    ('yuyv', cv2.COLOR_YUV2RGB_YUYV, True), ('yuv422_yuy2', cv2.COLOR_YUV2RGB_YUYV, True)])
def test_yuv422_byte_orders(encoding, code, swap):
    # Grey pixels (U = V = 128) decode to R = G = B = Y whatever the matrix.
    ys = [16, 100, 200, 235]
    pairs = []
    for y0, y1 in ((ys[0], ys[1]), (ys[2], ys[3])):
        pairs += [y0, 128, y1, 128] if swap else [128, y0, 128, y1]
    out = image_to_rgb(1, 4, encoding, 0, 8, bytes(pairs))
    assert out.shape == (1, 4, 3)
    ref = cv2.cvtColor(np.frombuffer(bytes(pairs), np.uint8).reshape(1, 4, 2), code)
    assert np.array_equal(out, ref)
    assert out[0, :, 0].tolist() == out[0, :, 1].tolist() == out[0, :, 2].tolist()
    assert out[0, 1, 0] < out[0, 2, 0]


def test_the_malformed_test_bag_header_is_refused_with_sizes():
    with pytest.raises(ImageError, match=r'data has 30 bytes, needs at least 921600 '
                       r'\(step 1920 x height 480\)'):
        image_to_rgb(480, 640, 'rgb8', 0, 1920, bytes(30))


@pytest.mark.parametrize('h, w, enc, step, n, message', [
    (2, 3, 'rgb8', 8, 100, 'step 8 is smaller than one row'),
    (0, 3, 'rgb8', 9, 0, 'zero size'),
    (2, 0, 'mono8', 0, 0, 'zero size'),
    (2, 3, 'rgb8', 9, 17, 'data has 17 bytes, needs at least 18'),
    (2, 3, 'jpeg', 9, 18, "cannot convert encoding 'jpeg' to RGB"),
    (1, 3, 'yuyv', 6, 6, 'even width'),
    (100, 100, 'mono8', 100, 10000, 'over the limit of 9999'),
])
def test_hostile_headers_raise_specific_errors(h, w, enc, step, n, message):
    with pytest.raises(ImageError, match=message):
        image_to_rgb(h, w, enc, 0, step, bytes(n), max_pixels=9999)


def test_label_encodings_are_not_pictures_and_colour_is_not_labels():
    with pytest.raises(ImageError, match='label encoding; use image_to_labels'):
        image_to_rgb(2, 3, '16UC1', 0, 6, bytes(12))
    with pytest.raises(ImageError, match='one class id per pixel'):
        image_to_labels(2, 3, 'rgb8', 0, 9, bytes(18))


def test_rgb_and_label_fields_round_trip():
    h, w, enc, step, data = rgb_to_image_fields(RGB)
    assert (h, w, enc, step, len(data)) == (2, 3, 'rgb8', 9, 18)
    assert np.array_equal(image_to_rgb(h, w, enc, 0, step, data), RGB)
    h, w, enc, step, data = rgb_to_image_fields(RGB, 'bgr8')
    assert data[:3] == bytes([3, 2, 1])
    lab8 = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    assert labels_to_image_fields(lab8) == (2, 3, 'mono8', 3, lab8.tobytes())
    lab16 = np.array([[0, 1, 2], [3, 4, 1000]], np.uint16)
    h, w, enc, step, data = labels_to_image_fields(lab16)
    assert (enc, step, data[-2:]) == ('16UC1', 6, (1000).to_bytes(2, 'little'))
    assert image_to_labels(h, w, enc, 0, step, data).tolist() == lab16.tolist()


def test_compressed_png_is_lossless_and_jpeg_close():
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    fmt, data = rgb_to_compressed(img, 'png')
    assert fmt == 'rgb8; png compressed bgr8'
    assert np.array_equal(compressed_to_rgb(fmt, data), img)
    smooth = np.repeat(np.linspace(0, 255, 24, dtype=np.uint8)[None, :, None], 16, 0)
    smooth = np.repeat(smooth, 3, 2)
    fmt, data = rgb_to_compressed(smooth, 'jpeg')
    assert np.abs(compressed_to_rgb(fmt, data).astype(int) - smooth).max() <= 8


def test_compressed_labels_keep_ids():
    lab = np.array([[0, 1, 2], [11, 4, 5]], np.uint8)
    ok, png = cv2.imencode('.png', lab)
    assert compressed_to_labels('mono8; png compressed', png.tobytes()).tolist() == lab.tolist()


def test_compressed_junk_and_bombs_are_refused_before_decoding():
    with pytest.raises(ImageError, match='no data'):
        compressed_to_rgb('jpeg', b'')
    with pytest.raises(ImageError, match='neither PNG nor JPEG'):
        compressed_to_rgb('jpeg', b'\x00' * 10)
    with pytest.raises(ImageError, match='could not decode the 24x16 image'):
        compressed_to_rgb('jpeg', rgb_to_compressed(np.zeros((16, 24, 3), np.uint8))[1][:200])
    _, png = rgb_to_compressed(np.zeros((100, 100, 3), np.uint8), 'png')
    with pytest.raises(ImageError, match='100x100 has 10000 pixels, over the limit of 9999'):
        compressed_to_rgb('png', png, max_pixels=9999)


# -- compressed frames: structure read before decoding (core.compressed) ----------------------
def _camera_jpeg(**params) -> bytes:
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), np.uint8), (5, 5), 0)
    flags = [v for kv in params.items() for v in (getattr(cv2, kv[0]), kv[1])]
    return cv2.imencode('.jpg', img, flags)[1].tobytes()


def test_a_jpeg_with_a_64_kb_exif_block_decodes_like_the_plain_one():
    import struct
    plain = _camera_jpeg()
    exif = plain[:2] + b'\xff\xe1' + struct.pack('>H', 65533) + bytes(65531) + plain[2:]
    said = []
    out = compressed_to_rgb('jpeg', exif, warnings=said)
    assert said == []
    assert np.array_equal(out, compressed_to_rgb('jpeg', plain))


@pytest.mark.parametrize('params', [{}, {'IMWRITE_JPEG_PROGRESSIVE': 1},
                                    {'IMWRITE_JPEG_RST_INTERVAL': 2},
                                    {'IMWRITE_JPEG_OPTIMIZE': 1, 'IMWRITE_JPEG_QUALITY': 20}])
def test_sound_jpegs_give_no_warnings(params, capfd):
    said = []
    compressed_to_rgb('jpeg', _camera_jpeg(**params), warnings=said)
    assert said == [] and capfd.readouterr().err == ''


def test_restarts_out_of_order_are_one_warning_for_the_frame():
    data = bytearray(_camera_jpeg(IMWRITE_JPEG_RST_INTERVAL=2))
    first = data.index(b'\xff\xd0', data.index(b'\xff\xda'))
    data[first + 1] = 0xD3                      # RST3 where RST0 belongs
    said = []
    out = compressed_to_rgb('jpeg', bytes(data), warnings=said)
    assert out.shape == (96, 128, 3)
    assert said == ['Corrupt JPEG data: found marker 0xd3 instead of RST0']


def test_a_png_ancillary_chunk_with_a_bad_crc_is_one_warning_and_not_printed(capfd):
    import struct
    import zlib
    png = cv2.imencode('.png', RGB[:, :, ::-1])[1].tobytes()
    body = b'Comment\x00hello'
    chunk = (struct.pack('>I', len(body)) + b'tEXt' + body
             + struct.pack('>I', zlib.crc32(b'tEXt' + body) ^ 1))
    said = []
    out = compressed_to_rgb('png', png[:33] + chunk + png[33:], warnings=said)
    assert np.array_equal(out, RGB) and said == ['tEXt: CRC error']
    assert capfd.readouterr().err == ''


def test_a_truncated_png_is_refused_without_reaching_the_decoder(capfd):
    png = cv2.imencode('.png', np.zeros((40, 60, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match=r'could not decode the 60x40 image; the data is '
                                         r'truncated or corrupt \(IDAT: chunk runs past the end '
                                         r'of the data \(truncated\)\)'):
        compressed_to_rgb('png', png[:50])
    with pytest.raises(ImageError, match=r'\(file ends before its IEND chunk \(truncated\)\)'):
        compressed_to_rgb('png', png[:-12])
    assert capfd.readouterr().err == ''


def test_a_5000_character_encoding_is_cut_in_the_error():
    encoding = 'x' * 5000
    with pytest.raises(ImageError) as err:
        image_to_rgb(2, 3, encoding, 0, 9, bytes(18))
    assert str(err.value).startswith(f"cannot convert encoding '{'x' * 48}'... (5000 "
                                     'characters) to RGB; supported: ')
    assert len(str(err.value)) < 200
    with pytest.raises(ImageError) as err:
        compressed_to_rgb('f' * 5000, b'junk')
    assert str(err.value).startswith(f"CompressedImage ({'f' * 48}... (5000 characters), 4 "
                                     'bytes): data is neither PNG nor JPEG')


def test_one_pixel_limit_for_core_and_node():
    from pspnet_ros.core.image import DEFAULT_MAX_PIXELS
    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    png = cv2.imencode('.png', np.zeros((4097, 4096), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match=r'4096x4097 has 16781312 pixels, over the limit of '
                                         r'16777216; downscale it or raise max_pixels'):
        compressed_to_rgb('png', png)
