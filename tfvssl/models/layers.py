"""Building blocks shared by the backbones and the methods.

The layers reproduce PyTorch semantics where the original models depend on them:
explicit symmetric zero padding (TF "same" pads the odd pixel at the end, which shifts
the sampling grid), max-pool padding with -inf, BatchNorm with eps 1e-5 / momentum 0.1,
and the original initialisers. Everything is channels-last.
"""

import dataclasses
import math

import keras
import tensorflow as tf


# ----------------------------------------------------------------------------------------
# Initialisers
# ----------------------------------------------------------------------------------------


def kaiming_normal_fan_out():
    """PyTorch `kaiming_normal_(mode="fan_out", nonlinearity="relu")` (DPC/MemDPC convs)."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def torch_default_kernel():
    """PyTorch's default conv/linear init, `kaiming_uniform_(a=sqrt(5))` = U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable("tfvssl")
class TorchDefaultBias(keras.initializers.Initializer):
    """PyTorch's default bias init: U(+-1/sqrt(fan_in)) with the fan-in of the weight."""

    def __init__(self, fan_in):
        self.fan_in = int(fan_in)

    def __call__(self, shape, dtype=None):
        bound = 1.0 / math.sqrt(self.fan_in) if self.fan_in > 0 else 0.0
        return keras.random.uniform(shape, -bound, bound, dtype=dtype)

    def get_config(self):
        return {"fan_in": self.fan_in}


def orthogonal(gain=1.0):
    """PyTorch `orthogonal_(gain)` on the flattened kernel (GRU gates, prediction heads)."""
    return keras.initializers.Orthogonal(gain=gain)


# ----------------------------------------------------------------------------------------
# Convolution and pooling with PyTorch padding
# ----------------------------------------------------------------------------------------


def _triple(value, rank):
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"expected {rank} values, got {value}")
    return value


@keras.saving.register_keras_serializable("tfvssl")
class Conv(keras.layers.Layer):
    """Convolution with PyTorch's symmetric zero padding, 2-D or 3-D by `len(kernel_size)`.

    The kernel is stored as `[kT, kH, kW, C_in, C_out]` (3-D) or `[kH, kW, C_in, C_out]`
    (2-D), the layout the PyTorch importer writes. A 3-D kernel with `kT == 1` and
    temporal stride 1 runs as a 2-D convolution over the `B*T` frames, which is faster on
    CPUs and identical in result. The padding is the conv op's "SAME" where that is
    symmetric (always for stride 1); elsewhere (a stride of 2 over an even size) the input
    gets zeros around it.

    Input `[B, T, H, W, C]` (3-D) or `[B, H, W, C]` (2-D); output likewise with `filters`
    channels.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        use_bias=False,
        kernel_initializer=None,
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        rank = 3 if not isinstance(kernel_size, int) and len(kernel_size) == 3 else 2
        self.rank = rank
        self.filters = int(filters)
        self.kernel_size = _triple(kernel_size, rank)
        self.strides = _triple(strides, rank)
        self.padding = _triple(padding, rank)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer or torch_default_kernel())
        self.bias_initializer = bias_initializer

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (in_channels, self.filters),
            initializer=self.kernel_initializer,
        )
        if self.use_bias:
            fan_in = in_channels * math.prod(self.kernel_size)
            initializer = self.bias_initializer or TorchDefaultBias(fan_in)
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=keras.initializers.get(initializer)
            )

    def call(self, x):
        kernel = tf.convert_to_tensor(self.kernel)
        per_frame = self.rank == 3 and self.kernel_size[0] == 1 and self.strides[0] == 1
        first = 1 if per_frame else 0  # A per-frame conv slides over H and W only.
        kernel_size, strides = self.kernel_size[first:], self.strides[first:]
        op_padding = _conv_padding(x.shape[1 + first : -1], kernel_size, strides, self.padding[first:])
        if op_padding is None:
            x, op_padding = _zero_pad(x, self.padding), "VALID"
        if per_frame:
            y = _per_frame(lambda frames: tf.nn.conv2d(frames, kernel[0], [1, *strides, 1], op_padding), x)
        elif self.rank == 2:
            y = tf.nn.conv2d(x, kernel, [1, *strides, 1], op_padding)
        else:
            y = tf.nn.conv3d(x, kernel, [1, *strides, 1], op_padding)
        if self.use_bias:
            y = tf.nn.bias_add(y, tf.convert_to_tensor(self.bias))
        return y

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, k, s, p in zip(input_shape[1:-1], self.kernel_size, self.strides, self.padding):
            spatial.append(None if size is None else (size + 2 * p - k) // s + 1)
        return (input_shape[0], *spatial, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=(
                keras.initializers.serialize(keras.initializers.get(self.bias_initializer))
                if self.bias_initializer
                else None
            ),
        )
        return config


def _same_pads(size, kernel, stride):
    """`(before, after)` zeros TF's "SAME" padding adds to an axis of `size` (None: unknown)."""
    if stride == 1:
        total = kernel - 1
    elif size is None:
        return None
    else:
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_padding(sizes, kernel_size, strides, padding):
    """The conv op's `padding` for PyTorch's symmetric `padding` of axes of static `sizes`.

    "VALID" without padding; "SAME" where TF's SAME padding is the symmetric one on every
    axis (it puts an odd pixel at the end, so for a stride above 1 that depends on the
    size; None sizes are unknown); otherwise None: the input needs zeros around it.
    """
    if not any(padding):
        return "VALID"
    if all(_same_pads(n, k, s) == (p, p) for n, k, s, p in zip(sizes, kernel_size, strides, padding)):
        return "SAME"
    return None


def _zero_pad(x, padding):
    """Pads the spatial axes of `[B, ..., C]` `x` with `padding[i]` zeros on both sides.

    Concatenated zeros, not tf.pad: in front of a Conv3D a tf.pad breaks Grappler's
    remapper on the training graph (it fuses the pad into the conv while the conv's
    gradient still reads the pad's shape), and then the graph loses every other fusion.
    Nor a conv's explicit padding: the 2-D one's gradients run without oneDNN, 3x slower.
    """
    for axis, pad in enumerate(padding, start=1):
        if pad:
            shape = tf.shape(x)
            zeros = tf.zeros(tf.concat([shape[:axis], [pad], shape[axis + 1 :]], 0), x.dtype)
            x = tf.concat([zeros, x, zeros], axis)
    return x


def _per_frame(fn, x):
    """Applies a 2-D op to every frame of `[B, T, H, W, C]` by folding T into the batch."""
    shape = tf.shape(x)
    frames = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
    y = fn(frames)
    # Keep what is statically known (batch, time, H, W, C) for downstream shape checks.
    static = x.shape[:2].concatenate(y.shape[1:])
    y = tf.reshape(y, tf.concat([shape[:2], tf.shape(y)[1:]], 0))
    return tf.ensure_shape(y, static)


@keras.saving.register_keras_serializable("tfvssl")
class MaxPool(keras.layers.Layer):
    """Max-pooling with PyTorch semantics: symmetric padding that never wins (-inf).

    `ceil_mode=True` adds the extra window PyTorch's ceil mode creates at the end of each
    axis (windows that start inside the padded input). Input/output `[B, T, H, W, C]` or
    `[B, H, W, C]` by `len(pool_size)`.
    """

    def __init__(self, pool_size, strides=None, padding=0, ceil_mode=False, **kwargs):
        super().__init__(**kwargs)
        rank = 3 if not isinstance(pool_size, int) and len(pool_size) == 3 else 2
        self.rank = rank
        self.pool_size = _triple(pool_size, rank)
        self.strides = _triple(strides if strides is not None else pool_size, rank)
        self.padding = _triple(padding, rank)
        self.ceil_mode = ceil_mode

    def call(self, x):
        pads = [[0, 0]]
        for axis, (k, s, p) in enumerate(zip(self.pool_size, self.strides, self.padding)):
            extra = 0
            if self.ceil_mode:
                size = tf.shape(x)[axis + 1] + 2 * p
                # PyTorch: out = ceil((size - k) / s) + 1, dropping a last window that
                # would start in the right padding.
                out = -((-(size - k)) // s) + 1
                out = tf.where((out - 1) * s >= size - p, out - 1, out)
                extra = tf.maximum((out - 1) * s + k - size, 0)
            pads.append([p, p + extra])
        pads.append([0, 0])
        if any(self.padding) or self.ceil_mode:
            x = tf.pad(x, pads, constant_values=x.dtype.min)
        if self.rank == 2:
            return tf.nn.max_pool2d(x, self.pool_size, self.strides, "VALID")
        temporal = self.pool_size[0] > 1 or self.strides[0] > 1
        if temporal and x.dtype != tf.float64:
            return tf.nn.max_pool3d(x, self.pool_size, self.strides, "VALID")
        frames = _per_frame(lambda frames: tf.nn.max_pool2d(frames, self.pool_size[1:], self.strides[1:], "VALID"), x)
        if temporal:
            # MaxPool3D has no float64 kernel: a box's maximum is the maximum over time of
            # the per-frame maxima, a 2-D pool over [T, H*W*C] columns.
            shape = tf.shape(frames)
            columns = tf.reshape(frames, [shape[0], shape[1], -1, 1])
            pooled = tf.nn.max_pool2d(columns, [self.pool_size[0], 1], [self.strides[0], 1], "VALID")
            return tf.reshape(pooled, tf.concat([shape[:1], tf.shape(pooled)[1:2], shape[2:]], 0))
        return frames

    def compute_output_shape(self, input_shape):
        # Known statically, so building a model needs no symbolic trace of `call`.
        spatial = []
        for size, k, s, p in zip(input_shape[1:-1], self.pool_size, self.strides, self.padding):
            if size is None:
                spatial.append(None)
            elif self.ceil_mode:
                out = -(-(size + 2 * p - k) // s) + 1
                spatial.append(out - 1 if (out - 1) * s >= size + p else out)
            else:
                spatial.append((size + 2 * p - k) // s + 1)
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            pool_size=self.pool_size, strides=self.strides, padding=self.padding, ceil_mode=self.ceil_mode
        )
        return config


# ----------------------------------------------------------------------------------------
# BatchNorm
# ----------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable("tfvssl")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNorm with PyTorch's semantics.

    eps 1e-5 and momentum 0.1 (Keras momentum 0.9); in training the output uses the
    biased batch variance while the running variance is updated with the unbiased one, as
    PyTorch does (it matters for small per-channel counts such as BatchNorm1d over a batch).
    With `always_batch_stats=True` it normalises with the statistics of the current batch
    even in inference, as DPC's pre-training backbone does (`track_running_stats=False`),
    without touching the moving statistics then; it still keeps them in training, so an
    exported encoder can switch to them. Normalising by the batch's statistics, it runs the
    fused op and its fused gradient (oneDNN on CPUs, cuDNN on GPUs; statistics accumulated in
    float32); a float64 model takes a staged float64 computation instead, so that it can be
    checked against a float64 reference.
    """

    def __init__(self, always_batch_stats=False, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
        self.always_batch_stats = always_batch_stats

    def add_weight(self, *args, **kwargs):
        if kwargs.get("name") in ("moving_mean", "moving_variance"):
            # Average the replicas' updates so that every replica and worker keeps the same
            # statistics (Keras' default leaves each worker with its own).
            kwargs.setdefault("aggregation", "mean")
        return super().add_weight(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise ValueError("tfvssl BatchNorm does not support masks")
        dtype = tf.float64 if self.compute_dtype == "float64" else tf.float32
        update = bool(training) and self.trainable
        batch_stats = (update or self.always_batch_stats) and not self.synchronized
        channels = tf.shape(inputs)[-1:]
        gamma = tf.cast(self.gamma, dtype) if self.scale else tf.ones(channels, dtype)
        beta = tf.cast(self.beta, dtype) if self.center else tf.zeros(channels, dtype)
        if batch_stats and inputs.dtype != tf.float64:
            y, mean, variance = self._fused_normalize_by_batch(inputs, gamma, beta)
        else:
            # Everything about the moving mean, the same on every replica: where a channel's
            # mean dwarfs its spread, Keras' synchronised one-pass sums of x and x^2 would
            # cancel in float32, and so would tf.nn.batch_normalization's x * a - mean * a.
            origin = tf.stop_gradient(tf.cast(self.moving_mean, dtype))
            x = tf.cast(inputs, dtype) - origin
            if update or self.always_batch_stats:
                mean, variance = self._moments(x, None)
                x -= mean
                mean += origin
            else:
                variance = tf.cast(self.moving_variance, dtype)
            y = x * (gamma * tf.math.rsqrt(variance + self.epsilon)) + beta
        if update:
            count = tf.cast(tf.size(inputs) // channels[0], dtype)
            if self.synchronized:
                count *= tf.distribute.get_strategy().num_replicas_in_sync
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)

    def _fused_normalize_by_batch(self, inputs, gamma, beta):
        """`(y, mean, variance)`: float32 or half-precision `inputs` normalised by their own
        statistics in one fused op and its fused gradient (oneDNN on CPUs, cuDNN on GPUs).

        On this project's 2-core CPU, 1.6 times faster in float32 than staged statistics with
        a closed-form gradient (y and its gradient within 2e-6 of the exact answer, relative,
        against 1.5e-7, over 40,960 values a channel) and 3 times faster in bfloat16 than that on a float32 copy (as
        accurate: bfloat16's rounding dominates).
        """
        shape = tf.shape(inputs)
        # Leading axes merged into one: the op takes [N, H, W, C].
        folded = [-1, shape[-3], shape[-2], shape[-1]] if inputs.shape.rank >= 4 else [-1, 1, 1, shape[-1]]
        x = tf.reshape(inputs, folded)
        shift = tf.zeros_like(gamma)
        if inputs.dtype == tf.float32:
            # The op's one-pass variance, E[x^2] - E[x]^2, cancels in float32 where a channel's
            # mean dwarfs its spread; one sample of each channel as origin keeps both terms
            # of the spread's size (the statistics shift with it, y and its gradient do not).
            shift = tf.stop_gradient(x[0, 0, 0])
            x -= shift
        y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
            epsilon=self.epsilon, is_training=True,
        )
        count = tf.cast(tf.size(inputs) // shape[-1], tf.float32)
        return tf.reshape(y, shape), mean + shift, unbiased * (count - 1.0) / tf.maximum(count, 1.0)

    def _moments(self, x, mask):
        """Per-channel mean and biased variance of `[B, ..., C]` `x`: Keras' cross-replica
        ones when synchronised, else this replica's (float64 models: the fused op is float32)."""
        if self.synchronized:
            return super()._moments(x, mask)
        return tf.nn.moments(x, axes=list(self._reduction_axes))

    def get_config(self):
        config = super().get_config()
        config["always_batch_stats"] = self.always_batch_stats
        return config


@dataclasses.dataclass(frozen=True)
class NormOptions:
    """How a model builds its BatchNorm layers.

    Attributes:
      always_batch_stats: normalise with batch statistics in inference too (DPC
        pre-training).
      synchronized: compute the statistics over all replicas (`--sync_bn`).
    """

    always_batch_stats: bool = False
    synchronized: bool = False

    def __call__(self, name):
        """Returns a new BatchNorm layer called `name`."""
        return BatchNorm(
            always_batch_stats=self.always_batch_stats, synchronized=self.synchronized, name=name
        )


# ----------------------------------------------------------------------------------------
# Recurrent aggregation and prediction heads (DPC family)
# ----------------------------------------------------------------------------------------


def conv1x1(filters, gain, name, kernel_size=1):
    """A biased 2-D convolution with orthogonal init (gain) and zero bias, as DPC's heads."""
    return Conv(
        filters, (kernel_size, kernel_size), padding=kernel_size // 2, use_bias=True,
        kernel_initializer=orthogonal(gain), bias_initializer="zeros", name=name,
    )


@keras.saving.register_keras_serializable("tfvssl")
class ConvGRU(keras.layers.Layer):
    """One-layer convolutional GRU over a sequence of feature maps (DPC's aggregator).

    Gates are convolutions over the channel concatenation `[input, hidden]` (1x1 kernels
    in DPC/MemDPC, so it is a per-position GRU):

        u = sigmoid(W_u [x, h]),  r = sigmoid(W_r [x, h]),
        o = tanh(W_o [x, r * h]), h' = h * (1 - u) + o * u.

    In training, dropout is applied to the new hidden state after every step and the
    dropped state is what the next step carries (the authors' choice; not Keras'
    `recurrent_dropout`). Initial state is zeros.
    """

    def __init__(self, hidden_size=256, kernel_size=1, dropout=0.1, gain=1.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.dropout_rate = dropout
        self.gain = gain
        self.reset_gate = conv1x1(hidden_size, gain, "reset_gate", kernel_size)
        self.update_gate = conv1x1(hidden_size, gain, "update_gate", kernel_size)
        self.out_gate = conv1x1(hidden_size, gain, "out_gate", kernel_size)
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        # input_shape: [B, h, w, C] of one step.
        gate_input = (*input_shape[:-1], input_shape[-1] + self.hidden_size)
        for gate in (self.reset_gate, self.update_gate, self.out_gate):
            gate.build(gate_input)

    def initial_state(self, x):
        """Zeros `[B, h, w, hidden]` matching one step's input `x` `[B, h, w, C]`."""
        return tf.zeros(tf.concat([tf.shape(x)[:-1], [self.hidden_size]], 0), x.dtype)

    def step(self, x, h, training=None):
        """One step: `x` `[B, h, w, C]`, `h` `[B, h, w, hidden]` -> new hidden state."""
        stacked = tf.concat([x, h], axis=-1)
        update = tf.sigmoid(self.update_gate(stacked))
        reset = tf.sigmoid(self.reset_gate(stacked))
        candidate = tf.tanh(self.out_gate(tf.concat([x, h * reset], axis=-1)))
        h = h * (1.0 - update) + candidate * update
        return self.dropout(h, training=training)

    def call(self, sequence, state=None, training=None):
        """Runs over `sequence` `[B, T, h, w, C]` (static T).

        Returns:
          `(outputs [B, T, h, w, hidden], last_state [B, h, w, hidden])`.
        """
        outputs = []
        for t in range(sequence.shape[1]):
            x = sequence[:, t]
            if state is None:
                state = self.initial_state(x)
            state = self.step(x, state, training=training)
            outputs.append(state)
        return tf.stack(outputs, axis=1), state


@keras.saving.register_keras_serializable("tfvssl")
class PredictionHead(keras.layers.Layer):
    """DPC's prediction network: 1x1 conv -> ReLU -> 1x1 conv, on `[B, h, w, C]` maps."""

    def __init__(self, hidden_size=256, output_size=256, gain=1.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.gain = gain
        self.conv0 = conv1x1(hidden_size, gain, "conv0")
        self.conv2 = conv1x1(output_size, gain, "conv2")

    def build(self, input_shape):
        self.conv0.build(input_shape)
        self.conv2.build((*input_shape[:-1], self.hidden_size))

    def call(self, x):
        return self.conv2(tf.nn.relu(self.conv0(x)))


@keras.saving.register_keras_serializable("tfvssl")
class ClassificationHead(keras.layers.Layer):
    """The papers' classifier on a pooled embedding: BatchNorm1d -> Dropout -> Linear.

    DPC and MemDPC's "LC" heads (BatchNorm1d(D) with gamma 1 / beta 0, dropout, orthogonal
    linear); `batch_norm=False` and the PyTorch default init give VCOP's plain linear layer.
    Input `[B, D]`, output logits `[B, num_classes]`.
    """

    def __init__(self, num_classes, dropout=0.5, batch_norm=True, orthogonal_init=True, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout_rate = dropout
        self.batch_norm = batch_norm
        self.orthogonal_init = orthogonal_init
        self.norm = BatchNorm(name="final_bn") if batch_norm else None
        self.dropout = keras.layers.Dropout(dropout)
        self.dense = None

    def build(self, input_shape):
        depth = int(input_shape[-1])
        if self.norm is not None:
            self.norm.build(input_shape)
        if self.orthogonal_init:
            kernel, bias = orthogonal(1.0), "zeros"
        else:
            kernel, bias = torch_default_kernel(), TorchDefaultBias(depth)
        self.dense = keras.layers.Dense(
            self.num_classes, kernel_initializer=kernel, bias_initializer=bias, name="final_fc"
        )
        self.dense.build(input_shape)

    def call(self, embedding, training=None):
        x = embedding
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self.dense(self.dropout(x, training=training))
