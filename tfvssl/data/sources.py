"""Decoding and encoding video files with PyAV (FFmpeg bundled in the wheel).

This is the offline side of the data path: the converter reads videos here once and writes
JPEG frames into TFRecord shards (`records.py`); training never decodes video.

Every way a file can fail to give frames raises `VideoError` with a short `reason`, so a
converter can skip a bad video, count the reasons and carry on.
"""

import dataclasses
import fractions
import itertools
import os

import av
import numpy as np

# Frame rates become exact fractions so that timestamps compare exactly; 1001 keeps the
# NTSC rates (30000/1001) exact.
_MAX_RATE_DENOMINATOR = 1001

# Container and codec per file extension, as the datasets ship: UCF101 and HMDB51 are
# MPEG-4 Part 2 in AVI, most of the rest H.264.
_CODEC_BY_EXTENSION = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264",
                       ".mkv": "libx264", ".avi": "mpeg4"}
# Formats whose index may sit at the start of the file: a truncated copy then still decodes.
_FASTSTART_EXTENSIONS = (".mp4", ".m4v", ".mov")
# MPEG-4 Part 2 is rate-controlled and defaults to 200 kbit/s, which smears small frames;
# about one bit per pixel keeps them close to the input.
_MPEG4_BITS_PER_PIXEL = 1.0
# Variable-frame-rate timestamps are written in milliseconds (MPEG-4 Part 2 allows time
# bases up to 1/65535 only).
_VFR_TIME_BASE = fractions.Fraction(1, 1000)


class VideoError(Exception):
    """A video that gives no frames.

    Attributes:
      reason: machine-readable cause, one of `"not found"`, `"empty file"`, `"unreadable"`
        (no container FFmpeg recognises), `"no video stream"`, `"decode error"` (the
        first frames already fail) and `"no frames decoded"`.
      path: the file.
    """

    def __init__(self, reason, path, detail=""):
        self.reason = reason
        self.path = str(path)
        message = f"{path}: {reason}"
        super().__init__(f"{message} ({detail})" if detail else message)


@dataclasses.dataclass
class Video:
    """Decoded frames and their timing.

    Attributes:
      frames: uint8 `[T, H, W, 3]`, RGB.
      fps: frame rate of `frames` (after any resampling or striding).
      source_fps: average frame rate of the file.
      duration: duration of the video stream in seconds: the longer of what its header
        declares and what decoded (headers round, and some omit it).
      truncated: the file ended early or broke off with a decode error; `frames` holds
        what decoded before that.
    """

    frames: np.ndarray
    fps: float
    source_fps: float
    duration: float
    truncated: bool = False


class _OpenVideo:
    """An opened file's first video stream, with its declared timing."""

    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise VideoError("not found", path)
        if os.path.getsize(path) == 0:
            raise VideoError("empty file", path)
        try:
            self.container = av.open(str(path))
        except av.error.FFmpegError as error:
            raise VideoError("unreadable", path, str(error)) from error
        if not self.container.streams.video:
            self.container.close()
            raise VideoError("no video stream", path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.source_rate = fractions.Fraction(rate) if rate else None
        self.declared_duration = self._declared_duration()
        self.decoded_duration = fractions.Fraction(0)
        self.truncated = False

    def _declared_duration(self):
        """The longest duration the stream's header claims, or None.

        Stream-level only: the container's duration also covers audio, which may run longer.
        """
        stream = self.stream
        claims = []
        if stream.duration and stream.time_base:
            claims.append(stream.duration * stream.time_base)
        if stream.frames and self.source_rate:
            claims.append(stream.frames / self.source_rate)
        return max(claims, default=None)

    def close(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def timed_frames(self):
        """Yields `(time, av.VideoFrame)` in presentation order, time in seconds (Fraction).

        Times count from the first frame. A decode error after the first frame ends the
        iteration and sets `truncated`; so does a stream that stops well before its
        declared duration. Afterwards `decoded_duration` holds the end of the last frame.

        Raises:
          VideoError: `"decode error"` or `"no frames decoded"` when nothing decodes.
        """
        frame_interval = 1 / self.source_rate if self.source_rate else fractions.Fraction(0)
        start = None
        time = None
        last_frame_duration = frame_interval
        frames = self.container.decode(self.stream)
        for index in itertools.count():
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as error:
                if index == 0:
                    raise VideoError("decode error", self.path, str(error)) from error
                self.truncated = True
                break
            if frame.pts is None or frame.time_base is None:
                time = index * frame_interval
            else:
                if start is None:
                    start = frame.pts * frame.time_base
                time = frame.pts * frame.time_base - start
            if frame.duration and frame.time_base:
                last_frame_duration = frame.duration * frame.time_base
            yield time, frame
        if time is None:
            raise VideoError("no frames decoded", self.path)
        self.decoded_duration = time + last_frame_duration
        # Some demuxers stop quietly at a cut: compare with what the header promised,
        # allowing two frames of slack for rounding in the declared duration.
        expected = self.declared_duration
        if expected and self.decoded_duration + 2 * frame_interval < expected:
            self.truncated = True


def _as_rate(value):
    return fractions.Fraction(float(value)).limit_denominator(_MAX_RATE_DENOMINATOR)


def _resample(timed_frames, fps):
    """Picks, for each output time k / fps, the latest frame at or before it.

    Works on variable-frame-rate input: frames are chosen by timestamp, duplicated where
    the source is sparser than `fps` and dropped where it is denser.

    Args:
      timed_frames: iterable of `(time, frame)`, times in seconds (Fraction), increasing;
        its last item is `(end_time, None)`, the end of the last frame.
      fps: output frame rate, Fraction.

    Yields:
      The chosen frames (the same object repeatedly when duplicated).
    """
    interval = 1 / fps
    next_time = fractions.Fraction(0)
    previous = None
    for time, frame in timed_frames:
        while previous is not None and next_time < time:
            yield previous
            next_time += interval
        previous = frame


def _with_end_time(timed_frames, video):
    """Appends `(end of the last frame, None)`, so resampling holds the last frame exactly as
    long as the stream shows it."""
    yield from timed_frames
    yield video.decoded_duration, None


def _to_rgb(frame, short_side):
    """Converts a decoded frame to uint8 `[H, W, 3]`, resized to `short_side` when given."""
    if short_side is None:
        return frame.to_ndarray(format="rgb24")
    scale = short_side / min(frame.width, frame.height)
    width = max(1, round(frame.width * scale))
    height = max(1, round(frame.height * scale))
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")


def _rgb_frames(video, *, fps, frame_stride, short_side, max_frames):
    """The frames of an opened video after resampling, striding, resizing and the cap."""
    if fps is not None and frame_stride != 1:
        raise ValueError("give either fps or frame_stride, not both")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    timed = video.timed_frames()
    if fps is not None:
        chosen = _resample(_with_end_time(timed, video), _as_rate(fps))
    else:
        chosen = itertools.islice((frame for _, frame in timed), 0, None, frame_stride)
    # A frame duplicated by upsampling is converted once.
    last_frame, last_rgb = None, None
    for frame in itertools.islice(chosen, max_frames):
        if frame is not last_frame:
            last_frame, last_rgb = frame, _to_rgb(frame, short_side)
        yield last_rgb


def iter_frames(path, *, fps=None, frame_stride=1, short_side=None, max_frames=None):
    """Decodes a video frame by frame, for videos too long to hold in memory.

    A file that breaks off mid-way yields the frames before the break (use `read_video` to
    learn that it did).

    Args:
      path: video file.
      fps: resample to this rate by presentation timestamps (each output time k / fps
        takes the latest frame at or before it; variable frame rates welcome).
      frame_stride: keep every `frame_stride`-th decoded frame instead.
      short_side: resize (bilinear, aspect kept) so the shorter side has this many pixels.
      max_frames: stop after this many output frames.

    Yields:
      uint8 `[H, W, 3]` RGB frames (grey and odd-sized sources included). A frame repeated
      by upsampling is the same array each time: copy it before writing into it.

    Raises:
      VideoError: the file gives no frames (see `VideoError.reason`).
      ValueError: both `fps` and `frame_stride` given, or a non-positive one.
    """
    with _OpenVideo(path) as video:
        yield from _rgb_frames(
            video, fps=fps, frame_stride=frame_stride, short_side=short_side, max_frames=max_frames
        )


def read_video(path, *, fps=None, frame_stride=1, short_side=None, max_frames=None):
    """Decodes a whole video; arguments as in `iter_frames`.

    Returns:
      A `Video`. Its `truncated` flag tells whether the file broke off early.

    Raises:
      VideoError: the file gives no frames (see `VideoError.reason`).
    """
    with _OpenVideo(path) as video:
        frames = np.stack(
            list(
                _rgb_frames(
                    video, fps=fps, frame_stride=frame_stride, short_side=short_side,
                    max_frames=max_frames,
                )
            )
        )
        if video.source_rate:
            source_fps = float(video.source_rate)
        else:
            source_fps = len(frames) / float(video.decoded_duration)
        return Video(
            frames=frames,
            fps=float(fps) if fps is not None else source_fps / frame_stride,
            source_fps=source_fps,
            duration=float(max(video.declared_duration or 0, video.decoded_duration)),
            truncated=video.truncated,
        )


def write_video(path, frames, fps, codec=None, *, timestamps=None):
    """Encodes frames into a video file.

    Pixels are stored as yuv420p, which needs even sizes: an odd height or width gets one
    more row or column repeating the last one, so such a video reads back one pixel larger.
    MP4 files get their index at the start, so a truncated copy still decodes.

    Args:
      path: output file; its extension picks container and default codec (`.mp4`, `.m4v`,
        `.mov`, `.mkv`: H.264 `libx264`; `.avi`: MPEG-4 Part 2 `mpeg4`, as UCF101 and
        HMDB51 ship).
      frames: uint8 `[T, H, W, 3]` RGB, T >= 1.
      fps: frame rate. With `timestamps`, it only sets the last frame's duration and the
        nominal rate.
      codec: FFmpeg encoder name, overriding the extension's default.
      timestamps: optional presentation time of each frame in seconds, increasing, for a
        variable-frame-rate video (rounded to milliseconds). AVI has no real variable
        rate: it fills the gaps with empty frames.

    Raises:
      ValueError: bad frames, timestamps or an extension without a default codec.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(
            f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}"
        )
    extension = os.path.splitext(str(path))[1].lower()
    if codec is None:
        if extension not in _CODEC_BY_EXTENSION:
            raise ValueError(
                f"no default codec for {extension!r} files; pass codec= or use one of "
                f"{sorted(_CODEC_BY_EXTENSION)}"
            )
        codec = _CODEC_BY_EXTENSION[extension]
    rate = _as_rate(fps)
    if timestamps is None:
        time_base = 1 / rate
        pts = np.arange(len(frames))
    else:
        time_base = _VFR_TIME_BASE
        pts = np.round(np.asarray(timestamps, np.float64) / float(time_base)).astype(np.int64)
        if pts.shape != (len(frames),) or np.any(np.diff(pts) <= 0):
            raise ValueError("timestamps must give one increasing time per frame (>= 1 ms apart)")

    # Repeat the last row/column where a size is odd (see the docstring).
    pad_height, pad_width = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_height or pad_width:
        frames = np.pad(frames, ((0, 0), (0, pad_height), (0, pad_width), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]

    options = {"movflags": "+faststart"} if extension in _FASTSTART_EXTENSIONS else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        if codec == "mpeg4":
            stream.bit_rate = int(_MPEG4_BITS_PER_PIXEL * width * height * rate)
        for frame_pts, frame in zip(pts, frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = int(frame_pts), time_base
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
