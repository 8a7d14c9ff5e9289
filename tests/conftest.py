"""Test-wide setup: two logical CPU devices, so distribution strategies can be tested on CI.

This must run before TensorFlow initialises its devices, hence at conftest import time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes half a minute to minutes on 2 CPU cores (-m 'not slow' skips)")


def pytest_runtest_setup(item):
    """Gives the strategies each test creates collective keys no earlier test has used.

    Every `MirroredStrategy` of a process starts its collective group keys at the same
    number, and an xdist worker runs many tests in one process: without this, a strategy
    would meet the collective instances of an earlier test's strategy ("Collective instance
    100 expected type 2 ..."). TensorFlow's own tests do the same with this attribute.
    """
    tf.distribute.MirroredStrategy._collective_key_base += 10_000


def pytest_runtest_teardown(item):
    """Turns off the op determinism a test's in-process `--deterministic` run turned on.

    It is process-wide, and an xdist worker runs many tests in one process: left on, it
    makes a later test's XLA training fail ("MaxPool gradient ops do not yet have a
    deterministic XLA implementation"). TensorFlow exports no public switch back.
    """
    from tensorflow.python.framework import config as tf_config

    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


SHARED = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared")
FIXTURES = os.path.abspath(os.path.join(SHARED, "fixtures", "reference"))


@pytest.fixture
def fixture_dir():
    """Returns a function giving the path of a reference fixture folder, or skipping."""

    def get(name):
        path = os.path.join(FIXTURES, name)
        if not os.path.isdir(path):
            pytest.skip(f"reference fixtures not found at {path} (they live in ../shared beside the clone)")
        return path

    return get


# Per method, the flags that shrink its paper configuration to test size (tiny frames, few
# frames per clip, small batches). Every method of `tfvssl.methods.METHODS` must have an entry:
# tests that train "every method" iterate over this table.
TINY_FLAGS = {
    "dpc": [
        "--resolution=32", "--num_blocks=4", "--block_length=2", "--frame_stride=1",
        "--pred_step=2", "--per_replica_batch_size=4", "--log_every=1", "--val_batches=1",
        "--shuffle_buffer=8",
    ],
    "memdpc": [
        "--resolution=32", "--num_blocks=4", "--block_length=2", "--frame_stride=1",
        "--pred_step=2", "--per_replica_batch_size=4", "--log_every=1", "--val_batches=1",
        "--shuffle_buffer=8",
    ],
    # 32 px gives 1x1 maps, where a 3x3 spatial kernel would only see padding.
    "tcp": [
        "--resolution=32", "--num_segments=4", "--segment_length=4", "--ar_kernel_size=3,1,1",
        "--batch_size=4", "--log_every=1", "--val_batches=1", "--shuffle_buffer=8",
    ],
    # r3d is the cheapest 3-D CNN of Pace and VCOP; clips of 4 (VCOP: 3 of them, 2 frames
    # apart) or 8 frames at 32 px.
    "pace": [
        "--backbone=r3d", "--clip_length=8", "--frame_size=32,40", "--resolution=32",
        "--batch_size=4", "--log_every=1", "--val_batches=1", "--shuffle_buffer=8",
    ],
    "vcop": [
        "--backbone=r3d", "--clip_length=4", "--clip_interval=2", "--frame_size=32,40",
        "--resolution=32", "--batch_size=4", "--log_every=1", "--val_batches=1",
        "--shuffle_buffer=8",
    ],
}
TINY_DPC_FLAGS = TINY_FLAGS["dpc"]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny embedded dataset (3 motion classes, 24 frames of 32 px), shared by the session."""
    from tfvssl.data import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(
        str(root),
        synthetic.SyntheticConfig(
            num_classes=3, train_videos_per_class=4, test_videos_per_class=2, num_frames=24,
            resolution=32, seed=0, shard_size=5,
        ),
    )
    return str(root)


def configured_method(method_cls, *args):
    """A `method_cls` instance configured like the command line `args`, the recipe filling
    the rest (as `tfvssl.pretrain` resolves it)."""
    from absl import flags
    from absl.testing import flagsaver

    from tfvssl.train import train_flags

    with flagsaver.flagsaver():
        flags.FLAGS(["test", f"--method={method_cls.name}", *args])
        return method_cls(train_flags.resolve_config(flags.FLAGS, method_cls))


def model_inputs(method, video, seed):
    """What the model sees of one video: `method.train_example`, then `batch_augment` on a
    batch of one, the batch dimension dropped."""
    example = method.train_example(video, seed)
    batch = method.batch_augment(tf.nest.map_structure(lambda value: value[None], example))
    return {name: value[0] for name, value in batch.items()}


def coded_video(num_frames, level, size=16):
    """A parsed record whose frame k is the flat grey `level * k`: the frame index can be read
    back from the decoded pixels."""
    import numpy as np

    from tfvssl.data import records

    jpegs = [records.encode_jpeg(np.full((size, size, 3), level * k, np.uint8)) for k in range(num_frames)]
    example = records.make_sequence_example({"rgb": jpegs}, filename="coded")
    return records.parse_sequence_example(tf.constant(example.SerializeToString()))
