"""The `Method` interface: what the generic trainer and the CLIs know of a pretext task.

A `Method` is everything the generic trainer must not know: the paper's recipe (the
defaults of the shared flags), how one training example is cut from a video (sampler and
augmentations), the Keras model and its encoder. The table of methods is
`tfvssl.methods.METHODS`.
"""

import types

import tensorflow as tf


def short_side_fraction(height, width, fraction):
    """`round(min(height, width) * fraction)`, int32: a crop side relative to the frames."""
    return tf.cast(tf.round(tf.cast(tf.minimum(height, width), tf.float32) * fraction), tf.int32)


class Method:
    """A self-supervised pretext task as the trainer sees it.

    Subclasses set `name` and `recipe` and implement the methods below. `config` is a
    namespace of the resolved flag values (shared flags left unset take the recipe's value).

    Attributes:
      name: the method's key in `tfvssl.methods.METHODS` (`--method`).
      recipe: the paper's values for the shared training flags (`lr`, `batch_size`,
        `optimizer`, `weight_decay`, `resolution`, `lr_schedule`, ...).
      modalities: the record modalities the method reads (see `records.MODALITY_KEYS`).
      identity_flags: the flags that fix the model's architecture and the clips it learns
        from; a workdir's checkpoints belong to their values, so a run refuses to resume
        one written with others (`tfvssl.pretrain`).
    """

    name = None
    recipe = {}
    identity_flags = ("method", "backbone", "modality", "resolution")

    def __init__(self, config):
        self.config = types.SimpleNamespace(**vars(config)) if not isinstance(config, dict) else (
            types.SimpleNamespace(**config)
        )

    @property
    def modalities(self):
        return (getattr(self.config, "modality", "rgb"),)

    def validate(self):
        """Raises ValueError naming the offending flag when the configuration is unusable."""

    def min_frames(self):
        """Frames a video needs to yield one training example."""
        raise NotImplementedError

    def train_example(self, video, seed):
        """Cuts and augments one training example.

        Args:
          video: a parsed record (`records.parse_sequence_example`): JPEG frames per
            modality, `num_frames`, `label`, ...
          seed: `[2]` int tensor; all randomness derives from it (stateless).

        Returns:
          A dict of tensors with static shapes (the model's `data`).
        """
        raise NotImplementedError

    def batch_augment(self, batch):
        """Augmentations run on a whole batch inside the training step, on the accelerator.

        Costly per-frame augmentations (colour jitter of every frame) belong here rather
        than in `train_example`, so the CPU input pipeline only samples, decodes and crops.
        `batch` is the batched output of `train_example`; the result is the model's data.
        """
        return batch

    def build_model(self, norm_options=None):
        """Returns the method's `PretextModel` (built lazily on first call)."""
        raise NotImplementedError

    def clip_shape(self):
        """`(T, H, W, C)` of one clip the exported encoder takes."""
        raise NotImplementedError

    def clip_frame_stride(self):
        """Temporal stride between the source frames of an encoder clip (DPC: 3)."""
        return 1

    def normalize(self, frames):
        """uint8 `[..., H, W, C]` frames, already at the encoder's size -> the model's input
        values (the training normalisation). Used by the uint8 serving signature."""
        raise NotImplementedError

    def eval_clip(self, frames):
        """Deterministic evaluation preprocessing of one clip: uint8 `[T, H, W, C]` frames
        of any size -> float32 `clip_shape()` (the paper's test-time resize/centre crop and
        the training normalisation)."""
        raise NotImplementedError

    def downstream_clip(self, frames, seed):
        """Random preprocessing of one clip for training a downstream classifier (probes,
        fine-tuning): uint8 `[T, H, W, C]` frames of any size -> float32 `[T,
        *clip_shape()[1:]]` (the paper's training transform of its action classifier, then
        the training normalisation). All randomness derives from the `[2]` int `seed`."""
        raise NotImplementedError

    def classifier_method(self, config, training):
        """The method as the clips of a downstream classifier see it: itself, or a copy whose
        `clip_shape()` has the classifier's number of blocks or segments, in training
        (`training=True`) or at test. `config` holds the evaluation flags."""
        del config, training
        return self

    def curriculum_stage(self, step):
        """The curriculum stage active at `step` (0 when the method has no curriculum)."""
        del step
        return 0

    def set_curriculum_stage(self, model, stage):
        """Reconfigures `model` for curriculum `stage`."""
        del model, stage
