"""Clip augmentations of the five methods as pure TF ops on `[T, H, W, C]` clips.

Geometry (crops, flips, resizing) is drawn once per clip so every frame sees the same
window; colour ops draw per frame or per clip as each method's recipe says. The DPC family
applies these ops to all blocks of a sample at once (`[N * L, H, W, C]`), so one crop
covers every block; VCOP, Pace and temporal CPC crop each clip of a tuple or each segment
independently, each with its `clip_seed` (their input pipelines plan those crops with
`resize_plan`).

Dtypes: geometry ops accept uint8 or float clips and return the input dtype (uint8
results of interpolation are rounded). Colour ops accept uint8 (0-255) or float in
[0, 1] and return float32 in [0, 1]. `normalize` returns float32 model inputs.

Randomness is stateless: every random op takes `seed`, an int32/int64 tensor of shape
`[2]`, and derives its sub-seeds from it, so the same seed gives the same output. All ops
work eagerly and inside `tf.data` maps with unknown T, H and W.

Resizing: `nearest` matches the authors' PIL `Scale` (DPC/MemDPC) except where a sample
falls exactly on a pixel boundary, where PIL's float accumulation picks the pixel before;
`bilinear` with `antialias=True` (the default) matches PIL's bilinear (DPC random-sized
crop, VCOP's 128x171 resize) to within one grey level; `antialias=False` corresponds to
OpenCV's bilinear and PyTorch's `interpolate` (Pace, Oops).
"""

import tensorflow as tf

from tfvssl.data import sampling

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

NORMALIZE_MODES = ("imagenet", "kinetics", "unit", "raw", "flow")

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma), used by its ColorJitter.
_GREY_WEIGHTS = (0.2989, 0.587, 0.114)

# Colour jitter operation ids, in torchvision's order.
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------


def _pair(size):
    """`size` as (height, width); an int or a scalar int tensor means a square."""
    if isinstance(size, (tuple, list)):
        height, width = size
        return height, width
    return size, size


def _as_float(clip):
    """uint8 0-255 or float 0-1 -> float32 0-1."""
    if clip.dtype == tf.uint8:
        return tf.cast(clip, tf.float32) / 255.0
    if not clip.dtype.is_floating:
        raise ValueError(f"clips must be uint8 or float, got {clip.dtype.name}")
    return tf.cast(clip, tf.float32)


def _cast_like(values, dtype):
    """Casts interpolated values back to the clip's dtype, rounding for integers."""
    if values.dtype == dtype:
        return values
    if dtype.is_integer:
        values = tf.clip_by_value(tf.round(values), dtype.min, dtype.max)
    return tf.cast(values, dtype)


def _crop(clip, top, left, height, width):
    """The window `[top:top + height, left:left + width]` of every frame."""
    fits = tf.debugging.assert_less_equal(
        tf.stack([height, width]),
        tf.shape(clip)[1:3],
        message="the crop (height, width) must fit the clip",
    )
    with tf.control_dependencies([fits]):
        window = tf.slice(clip, tf.stack([0, top, left, 0]), tf.stack([-1, height, width, -1]))
    # Keep the static sizes that slicing with tensors forgets.
    window.set_shape(
        [clip.shape[0], tf.get_static_value(height), tf.get_static_value(width), clip.shape[3]]
    )
    return window


def center_offset(length, crop_length):
    """The offset of a centred crop, rounded half to even (Python 3's round(), as
    torchvision's CenterCrop; tf.round rounds half to even too)."""
    return tf.cast(tf.round(tf.cast(length - crop_length, tf.float32) / 2.0), tf.int32)


def _per_frame(values):
    """`[D]` per-frame (or per-clip, D = 1) values -> `[D, 1, 1, 1]` to broadcast on a clip."""
    return tf.reshape(values, [-1, 1, 1, 1])


def _check_probability(prob):
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")


def _compiled(function):
    """`function` compiled with XLA, for the per-pixel chains of the colour ops and gathers.

    Unfused, each TF op is a pass over the whole clip; XLA fuses the chain into a few
    loops: DPC's per-frame jitter (40 frames of 128 x 128) takes 4x less CPU, and the
    nearest-neighbour column gather 6x less (TF gathers 3-byte pixels one memcpy at a
    time). Only deterministic ops
    go in: stateless random draws give other numbers under XLA, so they stay outside and a
    seed means the same augmentation eagerly, in `tf.data` and across versions.
    """
    return tf.function(function, jit_compile=True, reduce_retracing=True)


# ----------------------------------------------------------------------------------------
# Geometry: one draw per clip
# ----------------------------------------------------------------------------------------


def random_crop(clip, size, seed):
    """A window at a uniformly random position, the same for every frame.

    Args:
      clip: `[T, H, W, C]` uint8 or float.
      size: crop size, int or scalar int tensor (square) or (height, width); must
        fit the clip.
      seed: `[2]` int32/int64 tensor.

    Returns:
      `[T, height, width, C]`, the input dtype.
    """
    return _crop(clip, *crop_window(tf.shape(clip)[1], tf.shape(clip)[2], size, seed))


def crop_window(frame_height, frame_width, size, seed):
    """The window `random_crop` takes from frames of this size with this seed.

    Knowing it before decoding lets the pipeline decode only the window
    (`pipeline.decode_frames(..., crop_window=...)`).

    Returns:
      `(top, left, height, width)` int32 scalars.
    """
    height, width = _pair(size)
    top_seed, left_seed = sampling.split_seed(seed, 2)
    top = sampling.random_index(top_seed, frame_height - height + 1)
    left = sampling.random_index(left_seed, frame_width - width + 1)
    return top, left, height, width


def center_crop(clip, size):
    """The central window (offsets rounded half to even, as torchvision's `CenterCrop`).

    Args:
      clip: `[T, H, W, C]` uint8 or float.
      size: crop size, int or scalar int tensor (square) or (height, width); must
        fit the clip.

    Returns:
      `[T, height, width, C]`, the input dtype.
    """
    height, width = _pair(size)
    top = center_offset(tf.shape(clip)[1], height)
    left = center_offset(tf.shape(clip)[2], width)
    return _crop(clip, top, left, height, width)


def resize(clip, size, method="bilinear", antialias=True):
    """Resizes every frame to a fixed size (aspect ratio not kept).

    Args:
      clip: `[T, H, W, C]` uint8 or float.
      size: int (square: the authors' `Scale(img_dim)` applied to their square crops)
        or (height, width) (VCOP/Pace: (128, 171)).
      method: a `tf.image.resize` method: "nearest" (the authors' `Scale` default),
        "bilinear", ...
      antialias: PIL-style filtering when downscaling (see the module docstring).

    Returns:
      `[T, height, width, C]`, the input dtype.
    """
    height, width = _pair(size)
    if method == "nearest":
        return _resize_nearest(clip, height, width)
    return _cast_like(_image_resize(clip, tf.stack([height, width]), method, antialias), clip.dtype)


def _image_resize(images, size, method, antialias):
    """`tf.image.resize`, with bilinear antialiasing skipped where it cannot matter.

    Antialiasing widens the filter only when downscaling; upscaling in both directions
    gives the plain bilinear result (to float rounding, 0.01 of a grey level) three times
    slower, as when temporal CPC enlarges its 224/256 crops of short frames.
    """
    if not (antialias and method == "bilinear"):
        return tf.image.resize(images, size, method, antialias=antialias)
    upscaling = tf.reduce_all(size >= tf.shape(images)[-3:-1])
    return tf.cond(
        upscaling,
        lambda: tf.image.resize(images, size, method),
        lambda: tf.image.resize(images, size, method, antialias=True),
    )


def _nearest_indices(in_size, out_size):
    """The source index of each output pixel as `tf.image.resize`'s nearest neighbour
    (half-pixel centres): `min(floor((i + 0.5) * in / out), in - 1)`, in float32 as it."""
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    index = tf.floor((tf.cast(tf.range(out_size), tf.float32) + 0.5) * scale)
    return tf.minimum(tf.cast(index, tf.int32), in_size - 1)


def _resize_nearest(clip, height, width):
    """Nearest-neighbour resize as two gathers: the same pixels as `tf.image.resize`, which
    is 3x slower on uint8 clips (it works on a float copy)."""
    rows = _nearest_indices(tf.shape(clip)[1], height)
    cols = _nearest_indices(tf.shape(clip)[2], width)
    resized = _gather_pixels(clip, rows, cols)
    static_size = [tf.get_static_value(height), tf.get_static_value(width)]
    resized.set_shape([clip.shape[0], *static_size, clip.shape[3]])
    return resized


@_compiled
def _gather_pixels(clip, rows, cols):
    """`clip[:, rows][:, :, cols]` for `[T, H, W, C]` clips and int32 index vectors."""
    return tf.gather(tf.gather(clip, rows, axis=1), cols, axis=2)


def short_side_size(height, width, size):
    """`(height, width)` of frames resized so that their short side is `size`, the long side
    `floor(size * long / short)` as the authors' `Scale(int)`."""
    return (
        tf.where(height <= width, size, size * height // width),
        tf.where(height <= width, size * width // height, size),
    )


def resize_short_side(clip, size, method="bilinear", antialias=True):
    """Resizes every frame so its short side is `size`, keeping the aspect ratio.

    The long side becomes `floor(size * long / short)`, as the authors' `Scale(int)`.

    Args:
      clip: `[T, H, W, C]` uint8 or float.
      size: target short side.
      method: a `tf.image.resize` method.
      antialias: PIL-style filtering when downscaling.

    Returns:
      `[T, H', W', C]` with `min(H', W') = size`, the input dtype.
    """
    new_size = tf.stack(short_side_size(tf.shape(clip)[1], tf.shape(clip)[2], size))
    resized = _image_resize(clip, new_size, method, antialias)
    return _cast_like(resized, clip.dtype)


def random_resized_crop(
    clip,
    output_size,
    seed,
    area_range=(0.5, 1.0),
    aspect_range=(3 / 4, 4 / 3),
    swap_prob=0.5,
    attempts=10,
    method="bilinear",
    antialias=True,
):
    """DPC's `RandomSizedCrop` (Kinetics pre-training, all MemDPC and DPC fine-tuning).

    Each attempt draws an area fraction uniform in `area_range`, an aspect ratio
    (width / height) uniform in `aspect_range` and, with `swap_prob`, swaps width and
    height; sides are rounded. The first attempt that fits is cropped at a uniform
    position and resized to `output_size`. When no attempt fits, the fallback resizes the
    short side to the output size and takes the centre crop. One draw for the whole clip.
    Note: area and aspect are uniform, not log-uniform as in torchvision's
    `RandomResizedCrop`.

    `resized_crop_window` draws the window alone, so that an input pipeline decodes only
    it (DPC's plans the resize too: `resize_plan`); `resize_crop` finishes the crop on the
    decoded window.

    Args:
      clip: `[T, H, W, C]` uint8 or float.
      output_size: int (square) or (height, width).
      seed: `[2]` int32/int64 tensor.
      area_range: range of the crop area as a fraction of the frame area.
      aspect_range: range of the crop's width / height.
      swap_prob: probability of swapping the drawn width and height.
      attempts: attempts before the fallback.
      method: a `tf.image.resize` method (DPC: "bilinear"; MemDPC and DPC fine-tuning
        crop to 224 then resize with "nearest", i.e. `random_resized_crop(clip, 224,
        ...)` followed by `resize(..., img_dim, "nearest")`).
      antialias: PIL-style filtering when downscaling.

    Returns:
      `[T, height, width, C]`, the input dtype.
    """
    window, fits = resized_crop_window(
        tf.shape(clip)[1], tf.shape(clip)[2], seed, area_range, aspect_range, swap_prob, attempts
    )
    return resize_crop(_crop(clip, *window), fits, output_size, method, antialias)


def resized_crop_window(
    frame_height, frame_width, seed, area_range=(0.5, 1.0), aspect_range=(3 / 4, 4 / 3), swap_prob=0.5,
    attempts=10,
):
    """The window `random_resized_crop` takes from frames of this size with this seed.

    Returns:
      `((top, left, height, width), fits)`: int32 scalars, and a bool scalar that is False
      when no attempt fits, in which case the window is the whole frame.
    """
    area_seed, aspect_seed, swap_seed, top_seed, left_seed = sampling.split_seed(seed, 5)
    area = tf.cast(frame_height * frame_width, tf.float32)
    target_area = area * tf.random.stateless_uniform([attempts], area_seed, *area_range)
    aspect = tf.random.stateless_uniform([attempts], aspect_seed, *aspect_range)
    widths = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    heights = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    swap = tf.random.stateless_uniform([attempts], swap_seed) < swap_prob
    widths, heights = tf.where(swap, heights, widths), tf.where(swap, widths, heights)
    fits = (widths <= frame_width) & (heights <= frame_height)
    first_fit = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    fits = tf.reduce_any(fits)
    height = tf.where(fits, heights[first_fit], frame_height)
    width = tf.where(fits, widths[first_fit], frame_width)
    top = sampling.random_index(top_seed, frame_height - height + 1)
    left = sampling.random_index(left_seed, frame_width - width + 1)
    return (top, left, height, width), fits


def resize_crop(window, fits, output_size, method="bilinear", antialias=True):
    """The second half of `random_resized_crop`: the window resized to `output_size`, or,
    when no attempt fit (`window` is then the whole frame), the fallback.

    Args:
      window: `[T, h, w, C]`, the frames cut to `resized_crop_window`'s window.
      fits: its bool.
      output_size, method, antialias: as `random_resized_crop`.

    Returns:
      `[T, height, width, C]`, the input dtype.
    """
    output_height, output_width = _pair(output_size)

    def fallback():
        scaled = resize_short_side(window, tf.maximum(output_height, output_width), method, antialias)
        return center_crop(scaled, (output_height, output_width))

    return tf.cond(fits, lambda: resize(window, (output_height, output_width), method, antialias), fallback)


def random_flip(clip, seed, prob=0.5):
    """Flips every frame left-right with probability `prob`, one draw for the clip.

    Args:
      clip: `[T, H, W, C]` any dtype.
      seed: `[2]` int32/int64 tensor.
      prob: flip probability.

    Returns:
      `[T, H, W, C]`, the input dtype.
    """
    flip = draw_flip(seed, prob)
    return tf.cond(flip, lambda: tf.reverse(clip, axis=[2]), lambda: clip)


def draw_flip(seed, prob=0.5):
    """`random_flip`'s draw: a bool scalar, True with probability `prob`."""
    _check_probability(prob)
    return tf.random.stateless_uniform([], seed) < prob


def resize_nearest_and_flip(clip, size, flip_seed, prob=0.5):
    """`random_flip(resize(clip, size, "nearest"), flip_seed, prob)` in two gathers.

    The same pixels from the same draw; the flip is folded into the nearest-neighbour
    source columns, so the clip is copied once instead of twice (DPC's UCF101 recipe
    resizes to 128 px and flips every training clip).

    Args:
      clip: `[T, H, W, C]` any dtype.
      size: int or (height, width).
      flip_seed: `[2]` int32/int64 tensor.
      prob: flip probability.

    Returns:
      `[T, height, width, C]`, the input dtype.
    """
    height, width = _pair(size)
    rows = _nearest_indices(tf.shape(clip)[1], height)
    cols = _nearest_indices(tf.shape(clip)[2], width)
    cols = tf.where(draw_flip(flip_seed, prob), tf.reverse(cols, axis=[0]), cols)
    resized = _gather_pixels(clip, rows, cols)
    resized.set_shape([clip.shape[0], tf.get_static_value(height), tf.get_static_value(width), clip.shape[3]])
    return resized


# ----------------------------------------------------------------------------------------
# Deferred resizing: planned per clip in the input pipeline, run per batch in the step
# ----------------------------------------------------------------------------------------


def resize_plan(frame_size, regions, resized_size, crop_offsets, crop_size, antialias=True, flips=None):
    """Plans `crop(resize(region))` of K clips, to run later on a batch (`apply_resize_plan`).

    A bilinear resize is separable and linear: each output row is a weighted sum of source
    rows, each output column of source columns. So resizing a region of a frame to
    `resized_size`, cropping it and flipping it is `rows @ frame @ cols^T` for two small
    weight matrices, and only the source pixels with a weight need decoding. The input
    pipeline draws the windows and matrices and decodes only the windows; the batched
    training step multiplies (`apply_resize_plan`), on the accelerator. The weights are
    those of `tf.image.resize` (half-pixel centres; with `antialias`, the triangle widened
    by the downscaling factor, as `ScaleAndTranslate` and PIL), so the result is `resize`
    followed by `_crop` and `tf.reverse`, to float rounding.

    Args:
      frame_size: `(height, width)` of the source frames, int32 scalars.
      regions: int32 `[K, 4]`, (top, left, height, width) of the part of the frame each
        clip resizes (the whole frame, or a crop taken before the resize).
      resized_size: `(height, width)` the regions are resized to, ints or int32 scalars.
      crop_offsets: int32 `[K, 2]`, (top, left) of each clip's crop in its resized region.
      crop_size: `(height, width)` of the crops (ints: the output size).
      antialias: PIL-style filtering when downscaling.
      flips: optional bool `[K]`: flip that clip left-right.

    Returns:
      `(windows, rows, cols)`: int32 `[K, 4]` (top, left, height, width) windows of the
      source frames to decode, all of one size `h x w`; float32 `[K, crop_height, h]` and
      `[K, crop_width, w]` weights.
    """
    regions = tf.convert_to_tensor(regions, tf.int32)
    crop_offsets = tf.convert_to_tensor(crop_offsets, tf.int32)
    resized_height, resized_width = _pair(resized_size)
    crop_height, crop_width = _pair(crop_size)
    tops, rows = _axis_plan(
        frame_size[0], regions[:, 0], regions[:, 2], resized_height, crop_offsets[:, 0], crop_height, antialias
    )
    lefts, cols = _axis_plan(
        frame_size[1], regions[:, 1], regions[:, 3], resized_width, crop_offsets[:, 1], crop_width, antialias
    )
    if flips is not None:
        cols = tf.where(flips[:, None, None], tf.reverse(cols, axis=[1]), cols)
    num_clips = tf.shape(regions)[0]
    sizes = tf.broadcast_to(tf.stack([tf.shape(rows)[2], tf.shape(cols)[2]]), [num_clips, 2])
    windows = tf.concat([tf.stack([tops, lefts], axis=1), sizes], axis=1)
    return windows, rows, cols


def _axis_plan(frame_length, starts, lengths, resized, offsets, crop, antialias):
    """One axis of `resize_plan`: K regions `[start, start + length)` of a `frame_length`
    axis resized to `resized` pixels, output pixels `[offset, offset + crop)` kept.

    The weights are computed tap by tap (the few source pixels under each output pixel's
    triangle) and scattered into the dense matrices: a pass over `[K, crop, n]` would
    cost more than decoding the frames.

    Returns:
      `(window_starts, weights)`: int32 `[K]`, and float32 `[K, crop, n]`, the weights of
      the n source pixels from each window start (n, the widest span any clip reads).
    """
    lengths_f = tf.cast(lengths, tf.float32)[:, None, None]
    inverse_scale = lengths_f / tf.cast(resized, tf.float32)
    kernel_scale = tf.maximum(inverse_scale, 1.0) if antialias else tf.ones_like(inverse_scale)
    outputs = tf.range(crop)[None, :, None] + offsets[:, None, None]  # [K, crop, 1]
    centres = (tf.cast(outputs, tf.float32) + 0.5) * inverse_scale
    # Source pixels (relative to the region's start) within a kernel radius of the centre.
    first_tap = tf.cast(tf.math.ceil(centres - kernel_scale - 0.5), tf.int32)
    num_taps = tf.cast(tf.math.ceil(2.0 * tf.reduce_max(kernel_scale)), tf.int32) + 1
    taps = first_tap + tf.range(num_taps)[None, None, :]  # [K, crop, taps]
    inside = (taps >= 0) & (taps < lengths[:, None, None])
    distance = tf.abs(tf.cast(taps, tf.float32) + 0.5 - centres) / kernel_scale
    weights = tf.where(inside, tf.nn.relu(1.0 - distance), 0.0)
    weights /= tf.reduce_sum(weights, axis=2, keepdims=True)
    used = weights > 0
    taps += starts[:, None, None]  # In frame coordinates.
    first = tf.reduce_min(tf.where(used, taps, frame_length), axis=[1, 2])
    last = tf.reduce_max(tf.where(used, taps, -1), axis=[1, 2])
    span = tf.reduce_max(last - first + 1)
    window_starts = tf.minimum(first, frame_length - span)
    columns = tf.where(used, taps - window_starts[:, None, None], 0)
    clip_index, row_index = tf.meshgrid(tf.range(tf.shape(taps)[0]), tf.range(crop), indexing="ij")
    index = tf.stack(
        [tf.broadcast_to(i[:, :, None], tf.shape(taps)) for i in (clip_index, row_index)] + [columns], axis=-1
    )
    dense = tf.scatter_nd(index, weights, tf.stack([tf.shape(taps)[0], crop, span]))
    return window_starts, dense


def apply_resize_plan(frames, rows, cols):
    """Runs `resize_plan`'s resizes on decoded windows, batched.

    Two matrix products: every frame's rows at once (`[H', h] @ [h, w * C]`), then every
    clip's columns at once (`[F * H' * C, w] @ [w, W']`), three times faster on a CPU than
    the same contraction as `tf.einsum`.

    Args:
      frames: `[..., K, F, h, w, C]` uint8 or float: F frames of each clip's window
        (zero-padded beyond the window: padding has no weight).
      rows: float32 `[..., K, H', h]`; cols: float32 `[..., K, W', w]`.

    Returns:
      `[..., K, F, H', W', C]`, the input dtype (uint8 rounded, as `resize`).
    """
    values = tf.cast(frames, tf.float32)
    shape = tf.shape(values)
    clips, height, width, channels = shape[:-3], shape[-3], shape[-2], shape[-1]  # clips: [..., K, F]
    out_height, out_width = tf.shape(rows)[-2], tf.shape(cols)[-2]
    resized = tf.matmul(rows[..., None, :, :], tf.reshape(values, tf.concat([clips, [height, width * channels]], 0)))
    rank = len(frames.shape)
    swap_last_two = [*range(rank - 2), rank - 1, rank - 2]
    resized = tf.transpose(tf.reshape(resized, tf.concat([clips, [out_height, width, channels]], 0)), swap_last_two)
    resized = tf.matmul(tf.reshape(resized, tf.concat([shape[:-4], [-1, width]], 0)), cols, transpose_b=True)
    resized = tf.reshape(resized, tf.concat([clips, [out_height, channels, out_width]], 0))
    resized = tf.ensure_shape(
        tf.transpose(resized, swap_last_two), [*frames.shape[:-3], rows.shape[-2], cols.shape[-2], frames.shape[-1]]
    )
    return _cast_like(resized, frames.dtype)


def multi_crop(clip, size, num_crops):
    """Fixed evaluation views of a clip, each a crop of every frame.

    Views: 1 = centre; 3 = start, centre and end of the long side (left/centre/right, or
    top/centre/bottom for portrait frames; left/right when square), centred on the
    short side; 5 = top-left, top-right, bottom-left, bottom-right, centre (the order of
    torchvision's and MemDPC's `FiveCrop`); 10 = those five, then each of them flipped
    left-right (MemDPC's ten-crop).

    Args:
      clip: `[T, H, W, C]` uint8 or float.
      size: crop size, int (square) or (height, width).
      num_crops: 1, 3, 5 or 10.

    Returns:
      `[num_crops, T, height, width, C]`, the input dtype.
    """
    if num_crops not in (1, 3, 5, 10):
        raise ValueError(f"num_crops must be 1, 3, 5 or 10, got {num_crops!r}")
    height, width = _pair(size)
    clip_height, clip_width = tf.shape(clip)[1], tf.shape(clip)[2]
    bottom, right = clip_height - height, clip_width - width
    center_top, center_left = center_offset(clip_height, height), center_offset(clip_width, width)

    if num_crops == 1:
        corners = [(center_top, center_left)]
    elif num_crops == 3:
        portrait = clip_height > clip_width
        corners = [
            (tf.where(portrait, top, center_top), tf.where(portrait, center_left, left))
            for top, left in [(0, 0), (center_top, center_left), (bottom, right)]
        ]
    else:
        corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (center_top, center_left)]
    crops = [_crop(clip, top, left, height, width) for top, left in corners]
    if num_crops == 10:
        crops += [tf.reverse(crop, axis=[2]) for crop in crops]
    return tf.stack(crops)


def clip_seed(seed, index):
    """The seed of clip `index` of a stack drawn with `seed`: that of the crops a pipeline
    draws clip by clip (`resize_plan`, temporal CPC's segments)."""
    return tf.random.experimental.stateless_fold_in(seed, index)


# ----------------------------------------------------------------------------------------
# Colour
# ----------------------------------------------------------------------------------------


def _grey(frames):
    """`[..., 3]` float -> `[..., 1]` luma with torchvision's weights."""
    # A weighted sum of channel slices, not a dot product: XLA fuses it with the blend
    # around it, where a dot is a separate matrix product (colour jitter 2x slower).
    red, green, blue = _GREY_WEIGHTS
    return frames[..., 0:1] * red + frames[..., 1:2] * green + frames[..., 2:3] * blue


def _shift_hue(frames, shift):
    """Rotates the hue of float RGB frames by `shift` (`[D, 1, 1, 1]`, fraction of a turn)."""
    hsv = tf.image.rgb_to_hsv(frames)
    hue = tf.math.floormod(hsv[..., :1] + shift, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))


def _blend_step(frames, operation, factors, active):
    """Applies one of brightness, contrast or saturation per frame, where `active`.

    All three are torchvision's blend of the frame with a degenerate image (black, its
    mean grey, its greyscale), so one blend with a per-frame degenerate image computes
    whichever each frame draws; inactive frames blend with factor 1 (unchanged).

    Args:
      frames: `[T, H, W, 3]` float32 in [0, 1].
      operation: `[D]` int32 operation id per draw.
      factors: `[D, 4]` float32 factors.
      active: `[D]` bool, whether the draw applies its operation at this step.
    """
    factor = tf.gather(factors, operation, batch_dims=1)
    factor = _per_frame(tf.where(active, factor, tf.ones_like(factor)))
    operation = _per_frame(operation)
    grey = _grey(frames)
    mean_grey = tf.reduce_mean(grey, axis=[1, 2], keepdims=True)
    degenerate = tf.where(
        operation == _BRIGHTNESS,
        tf.zeros_like(mean_grey),
        tf.where(operation == _CONTRAST, mean_grey, grey),
    )
    return tf.clip_by_value(factor * frames + (1.0 - factor) * degenerate, 0.0, 1.0)


def adjust_colors(clip, factors, order):
    """torchvision's four colour adjustments with given factors, in a given order.

    The deterministic half of `color_jitter`, as torchvision's tensor ops: brightness
    scales the frame, contrast blends it with its mean grey, saturation blends it with
    its greyscale (weights 0.2989, 0.587, 0.114), hue rotates it in HSV; values are
    clamped to [0, 1] after each operation.

    Args:
      clip: `[T, H, W, 3]` uint8 or float in [0, 1], RGB.
      factors: `[D, 4]` float32, D = T (per frame) or 1 (whole clip): brightness,
        contrast and saturation factors (1 = unchanged) and the hue shift (fraction of a
        turn, 0 = unchanged).
      order: `[D, 4]` int32, a permutation of the operation ids 0 = brightness,
        1 = contrast, 2 = saturation, 3 = hue: the order they are applied in.

    Returns:
      `[T, H, W, 3]` float32 in [0, 1].
    """
    frames = _as_float(clip)
    # Hue is the costly operation and every frame applies it exactly once, so all
    # frames run the blends drawn before their hue step, one hue rotation, then the
    # blends drawn after it (instead of computing every operation at every step).
    hue_step = tf.argmax(tf.cast(order == _HUE, tf.int32), axis=1, output_type=tf.int32)
    for step in range(3):
        frames = _blend_step(frames, order[:, step], factors, active=step < hue_step)
    frames = _shift_hue(frames, _per_frame(factors[:, _HUE]))
    for step in range(1, 4):
        frames = _blend_step(frames, order[:, step], factors, active=step > hue_step)
    return frames


def sample_color_jitter(seed, num_draws, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """Draws `ColorJitter` parameters for `adjust_colors`, as torchvision does.

    Args:
      seed: `[2]` int32/int64 tensor.
      num_draws: D, int or scalar int tensor.
      brightness, contrast, saturation: jitter strengths x >= 0; factors uniform in
        `[max(0, 1 - x), 1 + x]`.
      hue: jitter strength in [0, 0.5]; shifts uniform in `[-hue, hue]`.

    Returns:
      `(factors, order)`: `[D, 4]` float32 factors and `[D, 4]` int32 uniformly random
      orders of the four operations.
    """
    strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
    for name, value in strengths.items():
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    factor_seed, order_seed = sampling.split_seed(seed, 2)
    shape = tf.stack([num_draws, 4])
    low = tf.constant([max(0.0, 1.0 - x) for x in strengths.values()] + [-hue])
    high = tf.constant([1.0 + x for x in strengths.values()] + [hue])
    factors = low + (high - low) * tf.random.stateless_uniform(shape, factor_seed)
    # Sorting uniform keys gives a uniformly random order of the four operations.
    order = tf.argsort(tf.random.stateless_uniform(shape, order_seed), axis=1)
    return factors, order


def color_jitter(
    clip,
    seed,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    prob=1.0,
    per_frame=True,
):
    """torchvision's `ColorJitter` on RGB clips, per frame or per clip.

    Factors are drawn by `sample_color_jitter` and applied by `adjust_colors`: brightness,
    contrast and saturation factors uniform in `[max(0, 1 - x), 1 + x]`, the hue shift
    uniform in `[-hue, hue]`, the four operations in a uniformly random order. With
    `per_frame` every frame draws its own factors, order and application (DPC/MemDPC
    pre-training, Pace); otherwise one draw serves the whole clip (DPC/MemDPC
    fine-tuning).

    Recipes: DPC/MemDPC pre-training (0.5, 0.5, 0.5, 0.25), prob 1, per frame; their
    fine-tuning (0.5, 0.5, 0.5, 0.25), prob 0.3, per clip; Pace (0.8, 0.8, 0.8, 0.2),
    prob 0.8, per frame.

    Args:
      clip: `[T, H, W, 3]` uint8 or float in [0, 1], RGB.
      seed: `[2]` int32/int64 tensor.
      brightness: brightness jitter strength, >= 0.
      contrast: contrast jitter strength, >= 0.
      saturation: saturation jitter strength, >= 0.
      hue: hue jitter strength, in [0, 0.5].
      prob: probability that the jitter is applied (per frame or per clip).
      per_frame: independent draws for every frame instead of one per clip.

    Returns:
      `[T, H, W, 3]` float32 in [0, 1].
    """
    num_draws = tf.shape(clip)[0] if per_frame else 1
    draws = _draw_color_jitter(seed, num_draws, brightness, contrast, saturation, hue, prob)
    return _apply_colors_where(clip, *draws)


def _draw_color_jitter(seed, num_draws, brightness, contrast, saturation, hue, prob):
    """The random half of `color_jitter`: `(factors [D, 4], order [D, 4], apply [D])`."""
    _check_probability(prob)
    params_seed, apply_seed = sampling.split_seed(seed, 2)
    factors, order = sample_color_jitter(
        params_seed, num_draws, brightness, contrast, saturation, hue
    )
    apply = tf.random.stateless_uniform(tf.reshape(num_draws, [1]), apply_seed) < prob
    return factors, order, apply


@_compiled
def _apply_colors_where(clip, factors, order, apply):
    """`adjust_colors` on the frames (or clip) where `apply` `[D]`, the others unchanged."""
    return tf.where(_per_frame(apply), adjust_colors(clip, factors, order), _as_float(clip))


def random_channel_split_grey(clip, seed, prob=0.5):
    """DPC's "random gray": per frame with probability `prob`, one random channel copied to all.

    This is channel splitting, not luminance: the frame becomes grey with the values of
    its R, G or B channel (uniform choice). DPC uses prob 0.5, MemDPC 0.25.

    Args:
      clip: `[T, H, W, C]` any dtype.
      seed: `[2]` int32/int64 tensor.
      prob: probability per frame.

    Returns:
      `[T, H, W, C]`, the input dtype.
    """
    return _split_channels_where(clip, *_draw_channel_split(seed, tf.shape(clip)[0], prob))


def _draw_channel_split(seed, num_frames, prob, num_channels=3):
    """The random half of `random_channel_split_grey`: `(channel [T], apply [T])`."""
    _check_probability(prob)
    apply_seed, channel_seed = sampling.split_seed(seed, 2)
    channel = sampling.random_index(channel_seed, num_channels, shape=tf.reshape(num_frames, [1]))
    apply = tf.random.stateless_uniform(tf.reshape(num_frames, [1]), apply_seed) < prob
    return channel, apply


@_compiled
def _split_channels_where(clip, channel, apply):
    """Frames where `apply` `[T]` become their channel `channel` `[T]` copied to all."""
    split = tf.gather(clip, channel, axis=3, batch_dims=1)[..., None]
    return tf.where(_per_frame(apply), tf.broadcast_to(split, tf.shape(clip)), clip)


def frame_wise_color(clips, seeds, grey_prob=0.0, jitter=(0.0, 0.0, 0.0, 0.0), jitter_prob=1.0):
    """Per-frame channel-split grey, then per-frame colour jitter, on a batch of clips.

    The batched form of `random_channel_split_grey` followed by `color_jitter(per_frame=True)`
    (DPC, MemDPC; Pace with `grey_prob=0`): each example draws from its own seed exactly
    what those ops draw, so a clip gets the same frames either way. The draws are per
    example; the pixel work runs once over all frames of the batch, which is what lets the
    trainer run these costly per-frame ops on the accelerator instead of the input pipeline.

    Args:
      clips: `[B, T, H, W, 3]` uint8 or float in [0, 1], RGB.
      seeds: `[B, 2]` int seeds, one per example.
      grey_prob: per-frame probability of channel-split grey.
      jitter: (brightness, contrast, saturation, hue) strengths.
      jitter_prob: per-frame probability that the jitter applies.

    Returns:
      `[B, T, H, W, 3]` float32 in [0, 1].
    """
    shape = tf.shape(clips)
    num_frames = shape[1]
    frames = _as_float(tf.reshape(clips, tf.concat([[-1], shape[2:]], 0)))

    def draw(seed):
        grey_seed, jitter_seed = sampling.split_seed(seed, 2)
        channel, grey = _draw_channel_split(grey_seed, num_frames, grey_prob)
        return (channel, grey, *_draw_color_jitter(jitter_seed, num_frames, *jitter, jitter_prob))

    signature = (
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.bool),
        tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 4], tf.int32),
        tf.TensorSpec([None], tf.bool),
    )
    draws = tf.map_fn(draw, seeds, fn_output_signature=signature)
    channel, grey, factors, order, apply = (tf.reshape(d, tf.concat([[-1], tf.shape(d)[2:]], 0)) for d in draws)
    if grey_prob > 0:
        frames = _split_channels_where(frames, channel, grey)
    if any(jitter):
        frames = _apply_colors_where(frames, factors, order, apply)
    return tf.reshape(frames, shape)


def color_drop(clips, seeds, prob=1.0, fill=0.5):
    """Colour dropping (Doersch et al., 2015), as temporal CPC uses on RGB segments.

    Each clip keeps one uniformly chosen channel and has the other two replaced with
    Gaussian noise whose standard deviation is 1/100 of the kept channel's, so the network
    cannot match views by their colour statistics. Lorre et al. drop colours per segment,
    to make consecutive (overlapping) segments less similar: pass the segments as clips.
    One draw per clip, from its own seed; the noise is one draw over the whole batch (from
    the first clip's seed), so the op runs batched in the training step
    (`Method.batch_augment`) rather than clip by clip in the input pipeline.

    Doersch et al. work on mean-subtracted inputs, so their dropped channels sit at the
    mean colour; here they sit at `fill` (mid-grey by default) before the noise.

    Args:
      clips: `[N, T, H, W, 3]` uint8 or float in [0, 1].
      seeds: `[N, 2]` int32/int64 seeds, one per clip.
      prob: probability of dropping, per clip.
      fill: value of the dropped channels, in [0, 1].

    Returns:
      `[N, T, H, W, 3]` float32 (noise can step slightly outside [0, 1]).
    """
    _check_probability(prob)
    frames = _as_float(clips)
    num_channels = tf.shape(frames)[-1]

    def draw(seed):
        apply_seed, channel_seed, _ = sampling.split_seed(seed, 3)
        return tf.random.stateless_uniform([], apply_seed) < prob, sampling.random_index(channel_seed, num_channels)

    apply, kept = tf.map_fn(draw, seeds, fn_output_signature=(tf.bool, tf.int32))  # [N], [N]
    noise_seed = sampling.split_seed(seeds[0], 3)[2]
    kept_values = tf.gather(frames, kept, axis=4, batch_dims=1)  # [N, T, H, W]
    noise_std = tf.math.reduce_std(kept_values, axis=[1, 2, 3]) / 100.0
    noise = fill + noise_std[:, None, None, None, None] * tf.random.stateless_normal(tf.shape(frames), noise_seed)
    is_kept = tf.range(num_channels)[None, :] == kept[:, None]  # [N, 3]
    keep = tf.logical_or(is_kept, tf.logical_not(apply)[:, None])
    return tf.where(keep[:, None, None, None, :], frames, noise)


# ----------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------


def normalize(clip, mode="imagenet", bgr=False):
    """Turns a clip into the model input scaling of a method.

    Modes:
      - "imagenet": (x - mean) / std with ImageNet statistics on [0, 1] (DPC, MemDPC).
      - "kinetics": the same with Kinetics statistics (Oops).
      - "unit": [0, 1] (VCOP).
      - "raw": 0-255 floats (Pace).
      - "flow": optical flow stored as images (zero motion at mid-grey) centred by
        subtracting each frame's spatial mean per channel, which removes the mean
        displacement caused by camera motion (the two-stream practice that temporal CPC
        follows); the result is in [-1, 1] in units of the stored range.
    "unit", "raw" and "flow" accept any number of channels (2-channel flow, 1-channel
    image differences); "imagenet" and "kinetics" need 3.

    Args:
      clip: `[T, H, W, C]` uint8 (0-255) or float in [0, 1].
      mode: one of `NORMALIZE_MODES`.
      bgr: reverse the channels after normalising (Pace's OpenCV frames are BGR).

    Returns:
      `[T, H, W, C]` float32.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"mode must be one of {NORMALIZE_MODES}, got {mode!r}")
    num_channels = clip.shape[-1]
    if (mode in ("imagenet", "kinetics") or bgr) and num_channels not in (None, 3):
        raise ValueError(
            f"mode {mode!r}{' with bgr' if bgr else ''} needs 3 channels, got {num_channels}"
        )
    return _normalize_values(clip, mode, bgr)


@_compiled
def _normalize_values(clip, mode, bgr):
    frames = _as_float(clip)
    if mode == "imagenet":
        frames = (frames - IMAGENET_MEAN) / IMAGENET_STD
    elif mode == "kinetics":
        frames = (frames - KINETICS_MEAN) / KINETICS_STD
    elif mode == "raw":
        frames = frames * 255.0
    elif mode == "flow":
        frames = frames - tf.reduce_mean(frames, axis=[1, 2], keepdims=True)
    if bgr:
        frames = tf.reverse(frames, axis=[-1])
    return frames
