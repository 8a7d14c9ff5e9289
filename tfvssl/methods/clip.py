"""What the Pace and VCOP methods share: the clip flags and `ClipMethod`, one encoder clip
of consecutive frames resized to a fixed frame size and centre-cropped at test time (the
clip encoder itself is `tfvssl.models.clip_encoder`)."""

import tensorflow as tf
from absl import flags

from tfvssl.data import augment, pipeline, sampling
from tfvssl.methods.base import Method


# Shared by Pace and VCOP (and the evaluation of their encoders). None takes the recipe.
flags.DEFINE_integer(
    "clip_length", None, "Pace/VCOP: frames per clip (16; 64 for Pace's S3D-G).", lower_bound=1
)
flags.DEFINE_list(
    "frame_size", None,
    "Pace/VCOP: height,width every frame is resized to before cropping --resolution (128,171; "
    "256,256 for Pace's S3D-G). The aspect ratio is not kept, as in the papers.",
)


class ClipMethod(Method):
    """The part of a `Method` Pace and VCOP share: one encoder clip of `clip_length`
    consecutive frames, resized to `frame_size` and centre-cropped at test time.

    Subclasses set `antialias` (PIL-like resizing for VCOP, OpenCV-like for Pace) and
    implement `normalize`.
    """

    antialias = True
    identity_flags = Method.identity_flags + ("clip_length", "frame_size")

    def frame_size(self):
        """`(height, width)` frames are resized to."""
        return tuple(int(v) for v in self.config.frame_size)

    def validate(self):
        c = self.config
        if c.modality != "rgb":
            raise ValueError(f"--modality={c.modality}: {self.name} trains on rgb frames")
        try:
            height, width = self.frame_size()
        except ValueError:
            raise ValueError(f"--frame_size={','.join(c.frame_size)}: needs two integers, height,width")
        if min(height, width) < c.resolution:
            raise ValueError(
                f"--frame_size={height},{width}: smaller than the --resolution={c.resolution} crop"
            )

    def resize(self, frames):
        """uint8 `[T, H, W, 3]` -> uint8 `[T, height, width, 3]` (bilinear, aspect not kept)."""
        return augment.resize(frames, self.frame_size(), "bilinear", antialias=self.antialias)

    def planned_clips(self, video, indices, seed, flip=False):
        """The training clips at `indices`, decoded only where their crops read.

        Each clip is resized to `frame_size`, cropped to `resolution` at a random position
        and, with `flip`, flipped with probability 1/2; its own draws come from
        `augment.clip_seed(seed, k)`. The resize itself is
        deferred to the batched step (`augment.resize_plan`): here only the source windows
        the crops read are decoded, and the weights that resize them are drawn.

        Args:
          video: a parsed record.
          indices: int32 `[K, T]` frame indices of K clips (K static).
          seed: `[2]` seed.
          flip: also draw a flip per clip (Pace).

        Returns:
          `{"frames": uint8 [K, T, h, w, 3], "rows": float32 [K, R, h], "cols": float32
          [K, R, w]}` (`augment.apply_resize_plan` gives the `[K, T, R, R, 3]` clips).
        """
        num_clips = indices.shape[0]
        resized, size = self.frame_size(), self.config.resolution
        offsets, flips = [], []
        for k in range(num_clips):
            clip_seed = augment.clip_seed(seed, k)
            if flip:
                clip_seed, flip_seed = sampling.split_seed(clip_seed, 2)
                flips.append(augment.draw_flip(flip_seed))
            top, left, _, _ = augment.crop_window(*resized, size, clip_seed)
            offsets.append(tf.stack([top, left]))
        height, width = pipeline.frame_size(video["rgb"])
        regions = tf.tile([[0, 0, height, width]], [num_clips, 1])
        windows, rows, cols = augment.resize_plan(
            (height, width), regions, resized, tf.stack(offsets), size, self.antialias,
            tf.stack(flips) if flip else None,
        )
        length = tf.shape(indices)[1]
        frames = pipeline.decode_frames(
            video["rgb"], tf.reshape(indices, [-1]), crop_window=tf.repeat(windows, length, axis=0)
        )
        frames = tf.reshape(frames, tf.concat([[num_clips, length], tf.shape(frames)[1:]], 0))
        return {"frames": frames, "rows": rows, "cols": cols}

    def clip_shape(self):
        c = self.config
        return (c.clip_length, c.resolution, c.resolution, 3)

    def eval_clip(self, frames):
        # Both papers' test transform: the training resize, then the centre crop.
        return self.normalize(augment.center_crop(self.resize(frames), self.config.resolution))
