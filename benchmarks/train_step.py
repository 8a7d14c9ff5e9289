"""Seconds per training step of each method, with the FLOPs the step does.

    python benchmarks/train_step.py --bench_json=/tmp/train_step.json

One full training step as `tfvssl.pretrain` runs it, minus the input pipeline: the batch
is already on the device (uint8 frames, cut by the method's own `train_example` from a
video of random JPEG frames), and the step is the method's `batch_augment`, the forward
and backward pass, the coupled weight decay and the optimizer update of the method's
recipe, in one `tf.function`. Each method runs at two sizes (`--bench_sizes`):

- paper: the paper's model configuration (resolution, clip lengths, backbone), batch 4;
- small: the same at 64 px (VCOP and Pace resize frames to 73x98 before the crop, the
  paper's 128x171 scaled by 64/112), batch 8;

and in each precision of `--bench_precisions` (Keras dtype policies). `--quick` replaces
both sizes by a tiny one (32 px, short clips, batch 2; one warm-up and one timed step)
that only checks that everything runs.

FLOPs are counted on the step's graph: every convolution, its two gradients (input and
filter) and every matrix product whose result is used, at 2 FLOPs per multiply-add, from
the static shapes of their operands. Elementwise work (BatchNorm, activations, the augmentation, the update) is
left out, so the achieved FLOP/s is that of the convolutions and products.

Prints a table and, with `--bench_json`, writes the numbers, with the process's CPU
seconds per step (all threads): on a machine shared with other work, they tell the cost
apart from the contention. Never asserted in tests: numbers depend on the machine and on
what else runs on it.
"""

import json
import math
import os
import platform
import sys
import time
import types

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from tfvssl import methods
from tfvssl.data import records
from tfvssl.train import train_flags
from tfvssl.train import optim

flags.DEFINE_list("bench_methods", [], "Methods to measure (default: every one of tfvssl.methods.METHODS).")
flags.DEFINE_list("bench_sizes", ["paper", "small"], "Sizes to measure: paper, small.")
flags.DEFINE_list("bench_precisions", ["float32", "mixed_bfloat16"], "Keras dtype policies to measure.")
flags.DEFINE_integer("bench_warmup", 2, "Steps before the clock starts (the first one traces).", lower_bound=1)
flags.DEFINE_integer("bench_steps", 5, "Steps timed; the median is reported.", lower_bound=1)
flags.DEFINE_boolean("quick", False, "One tiny configuration, one warm-up and one timed step (a smoke test).")
flags.DEFINE_string("bench_json", None, "Write the results here as JSON.")

FLAGS = flags.FLAGS

# What each size changes in the method's configuration (its recipe otherwise).
_SIZES = {
    "paper": dict(batch_size=4),
    "small": dict(batch_size=8, resolution=64, frame_size=["73", "98"]),
    # --quick: short clips so that the videos and the step stay small.
    "tiny": dict(
        batch_size=2, resolution=32, frame_size=["36", "48"], num_blocks=4, block_length=2, pred_step=2,
        clip_length=4, clip_interval=1, num_segments=3, segment_length=2,
    ),
}


def method_config(method_cls, size):
    """The method's resolved flags with the overrides of `size` (those the method has)."""
    config = vars(train_flags.resolve_config(FLAGS, method_cls))
    for name, value in _SIZES[size].items():
        if name in config:
            config[name] = value
    config["per_replica_batch_size"] = None
    return types.SimpleNamespace(**config)


def random_video(method, num_frames, height, width, seed=0):
    """A parsed record (as `records.parse_sequence_example` returns it) of random JPEG frames."""
    rng = np.random.default_rng(seed)
    video = {
        "filename": tf.constant("random"), "label": tf.constant(0, tf.int64), "label_string": tf.constant(""),
        "fps": tf.constant(25.0), "t_fail": tf.constant(-1.0), "rel_t": tf.constant(-1.0),
        "num_frames": tf.constant(num_frames, tf.int32),
    }
    for modality in method.modalities:
        channels = records.MODALITY_JPEG_CHANNELS[modality]
        frames = rng.integers(0, 256, (num_frames, height, width, channels), dtype=np.uint8)
        video[modality] = tf.stack([tf.io.encode_jpeg(frame) for frame in frames])
    return video


def device_batch(method, batch_size):
    """`batch_size` examples of the method's `train_example`, stacked: uint8 as training sees them."""
    size = method.config.resolution
    height, width = max(2 * size, 64), max(8 * size // 3, 86)  # Larger than any crop, 3:4.
    video = random_video(method, method.min_frames(), height, width)
    examples = [method.train_example(video, tf.constant([0, index], tf.int64)) for index in range(batch_size)]
    return tf.nest.map_structure(_stack_padded, *examples)


def _stack_padded(*values):
    """Stacks tensors, zero-padding each to the largest (as the input pipeline's padded batch
    does with the windows of a planned resize, whose sizes differ by a pixel)."""
    shape = tf.reduce_max(tf.stack([tf.shape(value) for value in values]), axis=0)
    return tf.stack([tf.pad(value, tf.stack([tf.zeros_like(shape), shape - tf.shape(value)], 1)) for value in values])


def build_step(method, batch):
    """The model, optimizer and a `tf.function` running one training step on `batch`."""
    model = method.build_model()
    model.compile(optimizer=optim.make_optimizer(method.config), jit_compile=False)
    # Create every variable, as the trainer does, before the step is traced.
    model.compute_pretext(method.batch_augment(batch), training=False)
    model.optimizer.build(model.trainable_variables)

    @tf.function
    def train_step(batch):
        return model.train_step(method.batch_augment(batch))

    return train_step


def _volume(shape):
    return math.prod(int(d) for d in shape)


def _conv_flops(op):
    """2 * output positions * kernel taps * input channels of the forward convolution
    that `op` computes or differentiates (its gradients cost the same)."""
    if op.type in ("Conv2D", "Conv3D"):
        kernel, forward_output = op.inputs[1].shape, op.outputs[0].shape
    elif op.type in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        kernel, forward_output = op.inputs[1].shape, op.inputs[2].shape
    else:  # Conv2DBackpropFilter, Conv3DBackpropFilterV2: the kernel is the output.
        kernel, forward_output = op.outputs[0].shape, op.inputs[2].shape
    return 2 * _volume(forward_output) * _volume(kernel[:-1])


def _matmul_flops(op):
    a, b = op.inputs[0].shape, op.inputs[1].shape
    transpose_a = op.get_attr("adj_x" if op.type.startswith("BatchMatMul") else "transpose_a")
    transpose_b = op.get_attr("adj_y" if op.type.startswith("BatchMatMul") else "transpose_b")
    rows = a[-1] if transpose_a else a[-2]
    inner = a[-2] if transpose_a else a[-1]
    columns = b[-2] if transpose_b else b[-1]
    # Broadcast batch dimensions: the output's leading ones.
    batch = _volume(op.outputs[0].shape[:-2])
    return 2 * batch * int(rows) * int(inner) * int(columns)


_FLOP_COUNTERS = {
    **dict.fromkeys(
        ("Conv2D", "Conv3D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "Conv3DBackpropInputV2",
         "Conv3DBackpropFilterV2"), _conv_flops,
    ),
    **dict.fromkeys(("MatMul", "BatchMatMulV2", "BatchMatMulV3"), _matmul_flops),
}


def count_flops(graph):
    """FLOPs of the convolutions and matrix products of `graph` and the functions it calls.

    Raises:
      ValueError: if one of them has a shape unknown when traced.
    """
    total = 0
    graphs = [graph, *(function.graph for function in graph._functions.values() if hasattr(function, "graph"))]
    for g in graphs:
        for op in g.get_operations():
            counter = _FLOP_COUNTERS.get(op.type)
            # An unused result (the gradient of the input clips) is pruned before it runs.
            if counter is None or not any(output.consumers() for output in op.outputs):
                continue
            try:
                total += counter(op)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{op.type} {op.name}: shape not static, cannot count its FLOPs") from error
    return total


def measure(name, size, precision):
    """`{seconds_per_step, clips_per_second, flops_per_step, ...}` of one configuration."""
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    method_cls = methods.get_method(name)
    config = method_config(method_cls, size)
    config.precision = precision
    method = method_cls(config)
    method.validate()
    batch = device_batch(method, config.batch_size)
    step = build_step(method, batch)
    flops = count_flops(step.get_concrete_function(batch).graph)
    warmup, steps = (1, 1) if FLAGS.quick else (FLAGS.bench_warmup, FLAGS.bench_steps)
    for _ in range(warmup):
        float(step(batch)["loss"])  # Waits for the step to finish.
    # The median of single steps: a step slowed down by other work on the machine is left out.
    times, cpu_times = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        float(step(batch)["loss"])
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    seconds, cpu_seconds = float(np.median(times)), float(np.median(cpu_times))
    keras.mixed_precision.set_dtype_policy("float32")
    return {
        "batch_size": config.batch_size, "resolution": config.resolution,
        "input_shapes": {key: list(value.shape) for key, value in batch.items()},
        "seconds_per_step": seconds, "cpu_seconds_per_step": cpu_seconds,
        "clips_per_second": config.batch_size / seconds,
        "flops_per_step": flops, "gflops_per_clip": flops / config.batch_size / 1e9,
        "achieved_gflops_per_second": flops / seconds / 1e9,
    }


def _table(results):
    header = ["method", "size", "precision", "batch", "s/step", "CPU s/step", "clips/s", "GFLOP/clip", "GFLOP/s"]
    rows = [header]
    for result in results:
        rows.append([
            result["method"], result["size"], result["precision"], str(result["batch_size"]),
            f"{result['seconds_per_step']:.3f}", f"{result['cpu_seconds_per_step']:.3f}",
            f"{result['clips_per_second']:.2f}",
            f"{result['gflops_per_clip']:.1f}", f"{result['achieved_gflops_per_second']:.1f}",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def main(argv):
    del argv
    unknown = set(FLAGS.bench_sizes) - {"paper", "small"}
    if unknown:
        raise app.UsageError(f"--bench_sizes: unknown {sorted(unknown)}; choose paper, small")
    names = FLAGS.bench_methods or list(methods.METHODS)
    sizes = ["tiny"] if FLAGS.quick else FLAGS.bench_sizes
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    print(f"{machine}; TF {tf.__version__}, Keras {keras.__version__}", file=sys.stderr)
    results = []
    for name in names:
        for size in sizes:
            for precision in FLAGS.bench_precisions:
                result = {"method": name, "size": size, "precision": precision, **measure(name, size, precision)}
                results.append(result)
                print(
                    f"{name} {size} {precision}: {result['seconds_per_step']:.3f} s/step, "
                    f"{result['achieved_gflops_per_second']:.1f} GFLOP/s", file=sys.stderr,
                )
    print(_table(results))
    if FLAGS.bench_json:
        report = {
            "machine": machine, "tensorflow": tf.__version__, "keras": keras.__version__,
            "warmup_steps": 1 if FLAGS.quick else FLAGS.bench_warmup,
            "timed_steps": 1 if FLAGS.quick else FLAGS.bench_steps, "results": results,
        }
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.bench_json)), exist_ok=True)
        with open(FLAGS.bench_json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    app.run(main)
