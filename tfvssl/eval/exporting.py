"""The export of an encoder: a SavedModel for TF Serving and a `.keras` file for Keras.

`<workdir>/export/<name>/<version>/` holds

    saved_model.pb, variables/   the SavedModel (TF Serving's model version directory)
    encoder.keras                the encoder for fine-tuning (`keras.saving.load_model`)
    export_info.json             method, clip shape, normalisation, outputs, versions, config

The SavedModel has three signatures with the same outputs (the encoder's pooled `[B, D]`
features, float32: `embedding`, plus `p4`/`p5` and `conv5_maxpool` where the method has
stage features):

    serving_default   clips     float32 [None, T, H, W, C]  already normalised
    serving_frames    frames    uint8   [None, T, H, W, C]  the method's normalisation runs
                                                            in the graph
    serving_examples  examples  string  [None]              serialized SequenceExamples
                                                            (tfvssl records): the centre
                                                            clip of T frames at the method's
                                                            frame stride is decoded and
                                                            preprocessed (`eval_clip`) in
                                                            the graph

A clip of another shape is rejected with an error naming the expected shape (signature
shapes alone are not enforced when a signature is called), and so are an empty batch, a
record shorter than one clip's span (`serving_examples`; training skips such videos) and,
unless exported with `assert_finite=False`, clips holding NaN or Inf (`serving_default`;
the other two inputs cannot hold them). BatchNorm runs on its moving
statistics in every signature. The `.keras` model is the same encoder as a functional model
(input `clips`, all the encoder's outputs): called with `training=True`, as by `fit`, its
BatchNorm layers use and update batch statistics, so it fine-tunes like the papers'
classifiers. Loading it needs tfvssl's layers registered: `exporting.load_keras_encoder`.

The TF Serving binary must be at least as new as the TensorFlow that wrote the SavedModel
(newer ops, e.g. `DisableCopyOnRead`, are unknown to older servers).
"""

import datetime
import json
import os

import keras
import numpy as np
import tensorflow as tf

import tfvssl
from tfvssl import methods  # noqa: F401  Registers tfvssl's layers and models with Keras.
from tfvssl.eval import inputs

INFO_FILE = "export_info.json"
KERAS_FILE = "encoder.keras"
FORMAT_VERSION = 1


def signature_inputs(clip_shape):
    """Signature name -> the `tf.TensorSpec` of its one input, for clips of `clip_shape`."""
    clips = [None, *clip_shape]
    return {
        "serving_default": tf.TensorSpec(clips, tf.float32, name="clips"),
        "serving_frames": tf.TensorSpec(clips, tf.uint8, name="frames"),
        "serving_examples": tf.TensorSpec([None], tf.string, name="examples"),
    }


def pooled_outputs(outputs):
    """The encoder outputs a signature returns: the `[B, D]` ones (not the feature maps)."""
    return {name: value for name, value in outputs.items() if value.shape.rank == 2}


def keras_encoder(method, encoder):
    """`encoder` as a functional model with a named `clips` input of `method.clip_shape()`."""
    clips = keras.Input(method.clip_shape(), name="clips")
    return keras.Model(clips, encoder(clips), name="encoder")


def affine_normalization(method):
    """The method's `normalize` as `frames * scale + offset` per channel, or None.

    Returns:
      `{"scale": [C], "offset": [C]}` when `normalize` maps each uint8 pixel on its own
      (ImageNet statistics, [0, 1], 0-255, ...), None when it does not (flow's per-frame
      mean subtraction): then send uint8 frames to `serving_frames` instead.
    """
    channels = method.clip_shape()[-1]
    levels = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1) * np.ones((1, 1, 1, channels), np.uint8)
    low, high = (np.asarray(method.normalize(tf.constant(v[None]))).reshape(channels) for v in levels)
    scale, offset = (high - low) / 255.0, low
    probe = np.random.default_rng(0).integers(0, 256, (2, 4, 4, channels), dtype=np.uint8)
    if not np.allclose(np.asarray(method.normalize(tf.constant(probe))), probe * scale + offset, atol=1e-4):
        return None
    return {"scale": scale.tolist(), "offset": offset.tolist()}


def next_version(model_dir):
    """1 + the largest integer version directory in `model_dir` (1 when there is none)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def non_empty(batch, signature):
    """`batch`, checked to hold at least one item: an empty one would fail deep inside the
    encoder with an error that does not say why."""
    check = tf.debugging.assert_positive(
        tf.shape(batch)[0], message=f"{signature}: the batch is empty; send at least one input"
    )
    with tf.control_dependencies([check]):
        return tf.identity(batch)


def export_encoder(method, encoder, export_dir, extra_info=None, assert_finite=True):
    """Writes the SavedModel, `encoder.keras` and `export_info.json` into `export_dir`.

    Args:
      method: the encoder's `Method` (clip shape, `normalize`, `eval_clip`).
      encoder: the encoder, built, with running-statistics BatchNorm
        (`tfvssl.workdir.restore_encoder`).
      export_dir: the version directory to create; it must not exist.
      extra_info: more entries for `export_info.json` (e.g. the checkpoint).
      assert_finite: `serving_default` rejects clips holding NaN or Inf (otherwise their
        embeddings are NaN, silently).

    Returns:
      The export_info dict.
    """
    if os.path.exists(export_dir):
        raise ValueError(f"{export_dir} exists; choose another --version")
    clip_shape = list(method.clip_shape())
    batch_of_clips = [None, *clip_shape]

    # One trace of the encoder, called by all three signatures.
    @tf.function(input_signature=[tf.TensorSpec(batch_of_clips, tf.float32)], autograph=False)
    def encode(clips):
        return pooled_outputs(encoder(clips, training=False))

    def serve_clips(clips):
        clips = non_empty(tf.ensure_shape(clips, batch_of_clips), "serving_default")
        if assert_finite:
            clips = tf.debugging.assert_all_finite(clips, "serving_default: the clips hold NaN or Inf values")
        return encode(clips)

    def serve_frames(frames):
        return encode(method.normalize(non_empty(tf.ensure_shape(frames, batch_of_clips), "serving_frames")))

    def serve_examples(examples):
        clips = tf.map_fn(
            lambda serialized: inputs.example_clip(method, serialized),
            non_empty(tf.ensure_shape(examples, [None]), "serving_examples"),
            fn_output_signature=tf.TensorSpec(clip_shape, tf.float32),
        )
        return encode(clips)

    specs = signature_inputs(clip_shape)
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint("serving_default", serve_clips, input_signature=[specs["serving_default"]])
    archive.add_endpoint("serving_frames", serve_frames, input_signature=[specs["serving_frames"]])
    archive.add_endpoint("serving_examples", serve_examples, input_signature=[specs["serving_examples"]])
    archive.write_out(export_dir, verbose=False)
    keras_encoder(method, encoder).save(os.path.join(export_dir, KERAS_FILE))

    outputs = encode.get_concrete_function().structured_outputs
    info = {
        "format_version": FORMAT_VERSION,
        "method": method.name,
        "modality": method.modalities[0],
        "clip_shape": clip_shape,
        "clip_frame_stride": method.clip_frame_stride(),
        "normalization": affine_normalization(method),
        "signatures": {
            name: {
                "input": spec.name, "dtype": spec.dtype.name, "shape": [-1 if d is None else d for d in spec.shape]
            }
            for name, spec in specs.items()
        },
        "outputs": {name: [-1, *spec.shape[1:]] for name, spec in sorted(outputs.items())},
        "examples_clip": (
            f"the centre {clip_shape[0]} frames at stride {method.clip_frame_stride()} of the "
            "record, preprocessed by the method's evaluation transform; a shorter record is an error"
        ),
        "assert_finite": assert_finite,
        "tfvssl_version": tfvssl.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "min_tensorflow_serving_version": ".".join(tf.__version__.split(".")[:2]),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {name: value for name, value in sorted(vars(method.config).items())},
        **(extra_info or {}),
    }
    with open(os.path.join(export_dir, INFO_FILE), "w") as f:
        json.dump(info, f, indent=1, default=str)
    return info


def read_info(export_dir):
    with open(os.path.join(export_dir, INFO_FILE)) as f:
        return json.load(f)


def load_keras_encoder(path):
    """Loads an exported `encoder.keras` (a file, or the export directory holding it)."""
    if os.path.isdir(path):
        path = os.path.join(path, KERAS_FILE)
    return keras.saving.load_model(path)


def load_saved_model_layer(export_dir, trainable=False):
    """The export's `serving_default` signature as a Keras layer (frozen by default).

    Its BatchNorm always runs on moving statistics (the signature is traced in inference).
    """
    return keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default", trainable=trainable)
