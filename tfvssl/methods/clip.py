"""What the Pace and VCOP methods share: the clip flags and `ClipMethod`, one encoder clip
of consecutive frames resized to a fixed frame size and centre-cropped at test time (the
clip encoder itself is `tfvssl.models.clip_encoder`)."""

from absl import flags

from tfvssl.data import augment
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

    def clip_shape(self):
        c = self.config
        return (c.clip_length, c.resolution, c.resolution, 3)

    def eval_clip(self, frames):
        # Both papers' test transform: the training resize, then the centre crop.
        return self.normalize(augment.center_crop(self.resize(frames), self.config.resolution))
