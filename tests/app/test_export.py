"""Warp animations and training replays (pages.lab.export): θ paths, frames, GIF, MP4."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pages.lab import export as E
from pages.lab import playground as pg


def _digit() -> np.ndarray:
    d = np.zeros((28, 28), np.float32)
    d[5:23, 8:12] = 1.0
    d[5:9, 8:21] = 1.0
    return d


# --------------------------------------------------------------------------- θ paths

@pytest.mark.parametrize("kind, target", [
    ("affine", [0.5, -0.2, 0.1, 0.3, 0.8, -0.1]),
    ("attention", [0.5, 0.2, -0.3]),
    ("projective", [1.0, 0.1, 0.0, 0.0, 0.9, 0.1, 0.0, 0.4]),
    ("tps", list(E.identity("tps", 32) + 0.05)),
])
def test_param_path_endpoints_are_identity_and_target(kind, target):
    path = E.param_path(kind, target, 7)
    assert len(path) == 7
    assert np.allclose(path[0], E.identity(kind, len(target)))
    assert np.allclose(path[-1], target)
    assert np.allclose(path[3], (path[0] + path[-1]) / 2)  # linear in the parameters


def test_param_path_with_controls_is_rigid_and_ends_on_target():
    controls = {"rot": 90.0, "sx": 1.0, "sy": 1.0}
    target = pg.intuitive_to_params(pg.PlaygroundState(rot=90.0), (28, 28))
    path = E.param_path("affine", target, 3, controls=controls, in_size=(28, 28))
    assert np.allclose(path[0], (1, 0, 0, 0, 1, 0)) and np.allclose(path[-1], target)
    a = np.asarray(path[1]).reshape(2, 3)[:, :2]
    assert np.allclose(a @ a.T, np.eye(2), atol=1e-9)  # half-way: a 45° rotation, not a shrunken matrix
    lin = np.asarray(E.param_path("affine", target, 3)[1]).reshape(2, 3)[:, :2]
    assert np.linalg.det(lin) < 0.9  # linear θ interpolation shrinks half-way (documented)


def test_interpolate_clamps_and_checks_length():
    assert np.allclose(E.interpolate_params("affine", [2, 0, 0, 0, 2, 0], 5.0), [2, 0, 0, 0, 2, 0])
    with pytest.raises(E.ExportError, match="needs 6 parameters"):
        E.interpolate_params("affine", [1, 2, 3], 0.5)
    with pytest.raises(E.ExportError, match="unknown transform"):
        E.identity("shear")


# --------------------------------------------------------------------------- frames

def test_warp_frames_count_and_size():
    target = pg.intuitive_to_params(pg.PlaygroundState(rot=30.0, sx=0.7, sy=0.7), (28, 28))
    frames = E.warp_frames(_digit(), "affine", target, n_frames=5, side=128)
    assert len(frames) == 5
    assert all(f.dtype == np.uint8 and f.shape == frames[0].shape for f in frames)
    h, w, c = frames[0].shape
    assert c == 3 and h >= 128 and w > 2 * 128  # input (with margin) and output side by side
    assert not np.array_equal(frames[0], frames[-1])
    # the output half of frame 0 is the undistorted digit (identity θ)
    first_out = frames[0][:128, -128:, 0]
    assert first_out.max() == 255 and first_out.min() == 0


def test_frames_limits():
    with pytest.raises(E.ExportError, match="1 to 60 frames"):
        E.warp_frames(_digit(), "affine", [1, 0, 0, 0, 1, 0], n_frames=61)
    with pytest.raises(E.ExportError, match="32 to 512 px"):
        E.warp_frames(_digit(), "affine", [1, 0, 0, 0, 1, 0], n_frames=2, side=1024)


def test_singular_frame_is_skipped_not_fatal():
    frames = E.warp_frames(_digit(), "affine", [-1, 0, 0, 0, 1, 0], n_frames=3, side=64)  # passes scale 0
    assert len(frames) == 3


# --------------------------------------------------------------------------- encoders

def test_gif_has_all_frames_and_size():
    frames = E.warp_frames(_digit(), "attention", [0.5, 0.2, 0.2], n_frames=6, side=96)
    data = E.gif_bytes(frames, fps=10)
    im = Image.open(io.BytesIO(data))
    assert im.format == "GIF" and im.n_frames == 6
    assert im.size == (frames[0].shape[1], frames[0].shape[0])


def test_gif_pads_frames_of_different_sizes():
    data = E.gif_bytes([np.zeros((10, 20, 3), np.uint8), np.ones((16, 12), np.float32)])
    im = Image.open(io.BytesIO(data))
    assert im.n_frames == 2 and im.size == (20, 16)
    with pytest.raises(E.ExportError, match="no frames"):
        E.gif_bytes([])


def test_mp4_readable_back_or_clear_reason(tmp_path):
    frames = E.warp_frames(_digit(), "affine", [0.8, 0.2, 0, -0.2, 0.8, 0], n_frames=8, side=64)
    try:
        data, codec = E.mp4_bytes(frames, fps=8)
    except E.ExportError as e:
        assert "no MP4 codec works" in str(e) and "GIF" in str(e)
        pytest.skip(f"no MP4 codec in this OpenCV build: {e}")
    assert codec in E.MP4_CODECS and len(data) > 0
    path = tmp_path / "warp.mp4"
    path.write_bytes(data)
    n, (h, w) = E.read_video(path)
    assert n == 8 and h >= frames[0].shape[0] and w >= frames[0].shape[1]


def test_mp4_with_only_a_bogus_codec_says_so():
    with pytest.raises(E.ExportError, match="tried zzzz"):
        E.mp4_bytes([np.zeros((16, 16, 3), np.uint8)] * 2, codecs=("zzzz",))


def test_training_replay_gif():
    imgs = [np.full((28, 28), v, np.float32) for v in (0.0, 0.5, 1.0)]
    data = E.training_replay_gif(imgs, fps=2, captions=["step 0", "step 100", "step 200"], side=64)
    im = Image.open(io.BytesIO(data))
    assert im.n_frames == 3 and im.size[0] == 64 and im.size[1] > 64  # caption row below
    with pytest.raises(E.ExportError, match="captions"):
        E.training_replay_gif(imgs, captions=["one"])
    assert E.subsample(5) == [0, 1, 2, 3, 4]
    idx = E.subsample(1000, 60)
    assert len(idx) == 60 and idx[0] == 0 and idx[-1] == 999


def test_params_from_theta():
    assert np.allclose(E.params_from_theta("affine", np.eye(3)[:2]), [1, 0, 0, 0, 1, 0])
    h = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0.5, 2.0]])
    assert np.allclose(E.params_from_theta("projective", h), [1, 0, 0, 0, 1, 0, 0, 0.25])
    assert E.params_from_theta("tps", np.zeros((16, 2))).shape == (32,)
    with pytest.raises(E.ExportError, match="h33 = 0"):
        E.params_from_theta("projective", np.zeros((3, 3)))
