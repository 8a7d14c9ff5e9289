"""The clips a downstream classifier trains and is tested on: each method's own training
transform (`Method.downstream_clip`, through `inputs.train_clip`) and clip length
(`Method.classifier_method`)."""

import types

import numpy as np
import pytest
import tensorflow as tf
from conftest import configured_method

from tfvssl.data import pipeline, records
from tfvssl.eval import inputs
from tfvssl.methods import dpc, memdpc, pace, tcp, vcop

SEEDS = range(12)


def still_video(frame, num_frames=6):
    """A parsed record whose frames all show `frame` (uint8 `[H, W, 3]`), and that frame
    as decoded from its JPEG."""
    jpeg = records.encode_jpeg(frame)
    example = records.make_sequence_example({"rgb": [jpeg] * num_frames}, filename="still")
    video = records.parse_sequence_example(tf.constant(example.SerializeToString()))
    return video, pipeline.decode_frames(video["rgb"], [0]).numpy()[0].astype(np.float32)


def textured_frame(height, width):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3)).astype(np.uint8)


def window_of(clip, source):
    """`(top, left, flipped)` of the window of `source` `[H, W, C]` that every frame of
    `clip` `[T, h, w, C]` equals (up to 1e-3), or None."""
    size_h, size_w = clip.shape[1:3]
    for flipped in (False, True):
        target = clip[:, :, ::-1] if flipped else clip
        for top in range(source.shape[0] - size_h + 1):
            for left in range(source.shape[1] - size_w + 1):
                if np.allclose(target, source[top:top + size_h, left:left + size_w], atol=1e-3):
                    return top, left, flipped
    return None


def train_windows(method, video, source, scale):
    """The window of `source` each seed's `inputs.train_clip` shows (None: none does)."""
    clips = [inputs.train_clip(method, video, tf.constant([seed, 7])).numpy() * scale for seed in SEEDS]
    assert clips[0].shape == method.clip_shape()
    return [window_of(clip, source) for clip in clips]


def test_vcop_trains_on_112_crops_of_the_128x171_resize_never_flipped():
    method = configured_method(vcop.VCOP, "--clip_length=2")
    video, frame = still_video(textured_frame(60, 80))
    resized = method.resize(tf.constant(frame[None].astype(np.uint8))).numpy()[0].astype(np.float32)
    assert resized.shape == (128, 171, 3) and method.clip_shape() == (2, 112, 112, 3)
    windows = train_windows(method, video, resized, 255.0)
    assert None not in windows  # A plain crop of the resize: no rescaling.
    assert not any(flipped for _, _, flipped in windows)
    assert len({(top, left) for top, left, _ in windows}) > 1  # At random positions.


def test_pace_trains_on_crops_of_the_resize_flipped_half_the_time():
    method = configured_method(pace.Pace, "--clip_length=2", "--frame_size=20,24", "--resolution=16")
    video, frame = still_video(textured_frame(30, 40))
    resized = method.resize(tf.constant(frame[None].astype(np.uint8))).numpy()[0].astype(np.float32)
    windows = train_windows(method, video, resized, 1.0)  # Pace feeds raw 0-255 values.
    assert None not in windows
    assert {flipped for _, _, flipped in windows} == {False, True}


def test_temporal_cpc_trains_on_one_crop_of_224_of_256_flipped_without_color_dropping():
    # 32 px short side: crops of 28 px (224/256), here at the resolution, so not resized.
    method = configured_method(tcp.TemporalCPC, "--num_segments=2", "--segment_length=2", "--resolution=28")
    video, frame = still_video(textured_frame(32, 40))
    windows = train_windows(method, video, frame, 255.0)
    assert None not in windows  # Colour kept: colour dropping would turn the crop grey.
    assert {flipped for _, _, flipped in windows} == {False, True}


def test_dpc_trains_with_clip_consistent_color_jitter_on_30_percent_of_the_clips():
    # A flat colour survives any crop, resize and flip; only the colour jitter changes it.
    method = configured_method(dpc.DPC, "--num_blocks=2", "--block_length=2", "--resolution=16")
    video, frame = still_video(np.full((24, 32, 3), (90, 140, 200), np.uint8))
    jittered = 0
    for seed in range(40):
        clip = inputs.train_clip(method, video, tf.constant([seed, 3])).numpy()
        assert clip.shape == (4, 16, 16, 3)
        # One draw for the clip.
        np.testing.assert_allclose(clip, np.broadcast_to(clip[:1, :1, :1], clip.shape), atol=1e-5)
        jittered += not np.allclose(clip[0, 0, 0], method.normalize(frame[None, None] / 255.0)[0, 0], atol=1e-4)
    assert 6 <= jittered <= 20  # Binomial(40, 0.3): mean 12.


def evaluation_config(**flags):
    return types.SimpleNamespace(**{"classifier_blocks": None, "classifier_segments": [8, 15], **flags})


def test_temporal_cpc_classifier_trains_on_8_segments_and_tests_on_15():
    method = configured_method(tcp.TemporalCPC)  # Pretrained on 10 segments of 10 frames.
    assert method.clip_shape()[0] == 55
    # Segments start every 5 frames: 7 * 5 + 10 and 14 * 5 + 10 frames.
    assert method.classifier_method(evaluation_config(), training=True).clip_shape()[0] == 45
    assert method.classifier_method(evaluation_config(), training=False).clip_shape()[0] == 80


def test_dpc_classifier_takes_5_blocks_or_the_codes_8_and_memdpc_its_pretraining_blocks():
    method = configured_method(dpc.DPC)
    assert method.clip_shape()[0] == 40  # 8 blocks of 5 frames in pretraining.
    for training in (True, False):
        assert method.classifier_method(evaluation_config(), training).clip_shape()[0] == 25
        assert method.classifier_method(evaluation_config(classifier_blocks=8), training).clip_shape()[0] == 40
    method = configured_method(memdpc.MemDPC, "--num_blocks=6")
    assert method.classifier_method(evaluation_config(), training=True).clip_shape()[0] == 30


@pytest.mark.parametrize("segments", [["8"], ["8", "x"], ["0", "15"]])
def test_bad_classifier_segments_are_named(segments):
    from absl import flags
    from absl.testing import flagsaver

    from tfvssl.eval import classify
    from tfvssl.eval import eval_flags

    with flagsaver.flagsaver():
        flags.FLAGS(["probe", "--encoder=x", "--output_dir=y", f"--classifier_segments={','.join(segments)}"])
        with pytest.raises(ValueError, match="--classifier_segments"):
            eval_flags.resolve(flags.FLAGS, classify.LinearProbe)
