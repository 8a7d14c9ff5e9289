"""Tests of video decoding and encoding with PyAV, on small files written here."""

import fractions

import av
import numpy as np
import pytest

from tfvssl.data import sources


def _ramp(num_frames, height=32, width=48):
    """uint8 `[T, H, W, 3]`: frame t is flat grey 8 * t, with a bright square in its top-left
    corner, so each frame reads back recognisably after lossy coding."""
    frames = np.repeat((8 * np.arange(num_frames, dtype=np.uint8))[:, None, None, None], 3, axis=3)
    frames = np.broadcast_to(frames, (num_frames, height, width, 3)).copy()
    frames[:, :8, :8] = 250
    return frames


def _frame_levels(frames):
    """The grey level each frame was written with: its bottom-right quarter's mean / 8."""
    height, width = frames.shape[1:3]
    return np.round(frames[:, height // 2 :, width // 2 :].mean(axis=(1, 2, 3)) / 8).astype(int)


def write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp2", rate=16000, layout="mono")
        for index in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1152
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_grey_video(path, frames):
    """Writes single-channel frames `[T, H, W]` with a grey pixel format (FFV1 in Matroska)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())


# ---- write_video and read_video round trips -------------------------------------------------


@pytest.mark.parametrize("extension, codec", [(".mp4", "h264"), (".avi", "mpeg4")])
def test_round_trip_keeps_count_shape_pixels_and_rate(tmp_path, extension, codec):
    frames = _ramp(30)
    path = tmp_path / f"video{extension}"
    sources.write_video(path, frames, fps=30)

    video = sources.read_video(path)

    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
    assert video.frames.shape == (30, 32, 48, 3) and video.frames.dtype == np.uint8
    np.testing.assert_allclose(video.frames, frames, atol=12)
    assert np.abs(video.frames.astype(int) - frames).mean() < 2
    assert video.fps == 30 and video.source_fps == 30
    assert video.duration == pytest.approx(1.0)
    assert not video.truncated


def test_iter_frames_yields_the_frames_of_read_video(tmp_path):
    path = tmp_path / "video.mp4"
    sources.write_video(path, _ramp(12), fps=12)

    frames = list(sources.iter_frames(path, frame_stride=2))

    np.testing.assert_array_equal(np.stack(frames), sources.read_video(path, frame_stride=2).frames)


def test_odd_sizes_are_padded_by_repeating_the_last_row_and_column(tmp_path):
    frames = np.zeros((4, 15, 21, 3), np.uint8)
    frames[:, -1, :] = 200  # Last row bright: the padded row must repeat it.
    path = tmp_path / "odd.mp4"
    sources.write_video(path, frames, fps=10)

    decoded = sources.read_video(path).frames

    assert decoded.shape == (4, 16, 22, 3)
    np.testing.assert_allclose(decoded[:, -2:, 2:-2].mean(), 200, atol=8)
    np.testing.assert_allclose(decoded[:, :10].mean(), 0, atol=8)


def test_grey_source_comes_out_rgb(tmp_path):
    frames = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (3, 15, 1))  # [3, 15, 25] ramp.
    path = tmp_path / "grey.mkv"
    _write_grey_video(path, frames)

    decoded = sources.read_video(path).frames

    assert decoded.shape == (3, 15, 25, 3)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    np.testing.assert_allclose(decoded[..., 1], frames, atol=2)


# ---- resampling, striding, resizing, capping ----------------------------------------------------


def test_fps_resampling_halves_the_count_keeping_every_other_frame(tmp_path):
    path = tmp_path / "video.mp4"
    sources.write_video(path, _ramp(30), fps=30)

    video = sources.read_video(path, fps=15)

    assert video.fps == 15 and video.source_fps == 30
    np.testing.assert_array_equal(_frame_levels(video.frames), np.arange(0, 30, 2))


def test_fps_upsampling_repeats_frames(tmp_path):
    path = tmp_path / "video.avi"
    sources.write_video(path, _ramp(10), fps=10)

    video = sources.read_video(path, fps=25)

    # Output times k / 25 s for k < 25 take frame floor(k * 10 / 25).
    np.testing.assert_array_equal(_frame_levels(video.frames), np.arange(25) * 10 // 25)


def test_variable_frame_rate_takes_the_latest_frame_at_or_before_each_time(tmp_path):
    times = [0.0, 0.1, 0.15, 0.4, 0.45, 0.5, 0.8, 0.85, 0.9, 1.2]
    path = tmp_path / "vfr.mp4"
    sources.write_video(path, _ramp(10), fps=10, timestamps=times)

    video = sources.read_video(path, fps=20)

    # The last frame lasts 1 / 10 s, so the video ends at 1.3 s: 26 output times k / 20.
    output_times = np.arange(26) / 20
    expected = np.searchsorted(times, output_times + 1e-9, side="right") - 1
    np.testing.assert_array_equal(_frame_levels(video.frames), expected)
    assert video.duration == pytest.approx(1.3)


def test_frame_stride_keeps_every_kth_frame(tmp_path):
    path = tmp_path / "video.avi"
    sources.write_video(path, _ramp(10), fps=25)

    video = sources.read_video(path, frame_stride=3)

    np.testing.assert_array_equal(_frame_levels(video.frames), [0, 3, 6, 9])
    assert video.fps == pytest.approx(25 / 3)


def test_short_side_resize_keeps_the_aspect(tmp_path):
    path = tmp_path / "video.mp4"
    sources.write_video(path, _ramp(3, height=32, width=48), fps=10)

    video = sources.read_video(path, short_side=16)

    assert video.frames.shape == (3, 16, 24, 3)
    # The 8x8 bright corner is now 4x4 (bilinear: its border is blended).
    assert video.frames[:, :3, :3].min() > 200 and video.frames[:, 5:, 5:].max() < 60


def test_max_frames_stops_early_without_flagging_truncation(tmp_path):
    path = tmp_path / "video.mp4"
    sources.write_video(path, _ramp(20), fps=10)

    video = sources.read_video(path, fps=5, max_frames=3)

    np.testing.assert_array_equal(_frame_levels(video.frames), [0, 2, 4])
    assert not video.truncated and video.duration == pytest.approx(2.0)


def test_bad_sampling_arguments(tmp_path):
    path = tmp_path / "video.mp4"
    sources.write_video(path, _ramp(2), fps=10)

    with pytest.raises(ValueError, match="either fps or frame_stride"):
        sources.read_video(path, fps=5, frame_stride=2)
    with pytest.raises(ValueError, match="max_frames must be >= 1"):
        sources.read_video(path, max_frames=0)


# ---- failures ------------------------------------------------------------------------------


def _reason(path):
    with pytest.raises(sources.VideoError) as error:
        sources.read_video(path)
    assert str(path) in str(error.value)
    return error.value.reason


def test_missing_empty_garbage_and_audio_only_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    audio = tmp_path / "audio.mp4"
    write_audio_only(audio)

    assert _reason(tmp_path / "missing.mp4") == "not found"
    assert _reason(empty) == "empty file"
    assert _reason(garbage) == "unreadable"
    assert _reason(audio) == "no video stream"


def test_video_stream_without_frames(tmp_path):
    path = tmp_path / "no_frames.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()  # Header only.

    assert _reason(path) == "no frames decoded"


def _noisy_video(path, num_frames=40):
    """Noise frames: every frame costs about the same bytes, so a cut lands mid-video."""
    frames = np.random.default_rng(0).integers(0, 256, (num_frames, 32, 48, 3), np.uint8)
    sources.write_video(path, frames, fps=25)
    return path.read_bytes()


@pytest.mark.parametrize("extension", [".mp4", ".avi"])
def test_truncated_file_returns_the_frames_before_the_cut(tmp_path, extension):
    data = _noisy_video(tmp_path / f"full{extension}")
    path = tmp_path / f"cut{extension}"
    path.write_bytes(data[: len(data) // 2])

    video = sources.read_video(path)

    assert video.truncated
    assert 2 <= len(video.frames) <= 30
    assert video.duration == pytest.approx(40 / 25)  # As the header declares.


def test_file_missing_only_its_last_frames_is_flagged(tmp_path):
    data = _noisy_video(tmp_path / "full.avi")
    path = tmp_path / "cut.avi"
    path.write_bytes(data[: len(data) * 9 // 10])

    video = sources.read_video(path)

    assert video.truncated and len(video.frames) < 38


def test_file_cut_before_its_first_frame_decodes(tmp_path):
    data = _noisy_video(tmp_path / "full.mp4")
    path = tmp_path / "cut.mp4"
    # Keep the header and index whole, cut into the first frame's data.
    path.write_bytes(data[: data.index(b"mdat") + 200])

    assert _reason(path) == "decode error"


def test_iter_frames_raises_lazily_with_the_reason(tmp_path):
    frames = sources.iter_frames(tmp_path / "missing.avi")

    with pytest.raises(sources.VideoError, match="not found"):
        next(frames)


# ---- write_video arguments ----------------------------------------------------------------------


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no default codec for '.webm'"):
        sources.write_video(tmp_path / "v.webm", _ramp(2), fps=10)
    with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\]"):
        sources.write_video(tmp_path / "v.mp4", _ramp(2).astype(np.float32), fps=10)
    with pytest.raises(ValueError, match="increasing"):
        sources.write_video(tmp_path / "v.mp4", _ramp(2), fps=10, timestamps=[0.5, 0.5])


def test_write_video_codec_override_and_ntsc_rate(tmp_path):
    path = tmp_path / "v.mkv"
    sources.write_video(path, _ramp(4), fps=30000 / 1001, codec="mpeg4")

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "mpeg4"
        assert stream.average_rate == fractions.Fraction(30000, 1001)
    assert sources.read_video(path).source_fps == pytest.approx(29.97, abs=0.01)
