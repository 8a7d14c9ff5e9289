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
