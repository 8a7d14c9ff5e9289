"""The base class of every method's Keras model: one training step for all of them.

A method's model implements `compute_pretext(data, training)` returning its loss and
metrics; `train_step` adds what every method needs and the authors' PyTorch code did
implicitly: coupled L2 weight decay on every parameter (PyTorch's `weight_decay`, not
Keras' decoupled one), global-batch loss scaling under `tf.distribute`, loss scaling for
float16, optional clipping of the global batch's gradient norm (`grad_clip_norm`), and
skipping a step whose loss is not finite. Because it is a regular Keras
`train_step`, the model also trains with `model.fit` in a user's own code.
"""

import inspect

import keras
import tensorflow as tf


def all_replicas_agree(flag):
    """True on every replica iff `flag` is true on all of them (scalar bool)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return flag
    failures = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(flag, tf.float32))
    return tf.equal(failures, 0.0)


def apply_gradients_if(condition, optimizer, grads, variables):
    """Applies `grads` unless `condition` is false on the replicas (it must agree on all).

    An optimizer step under MirroredStrategy synchronises replicas (a merge call), which
    may not sit inside a `tf.cond` in replica context; so the condition is evaluated in
    cross-replica context and the update re-entered per replica, as Keras'
    LossScaleOptimizer does.
    """
    context = tf.distribute.get_replica_context()
    if (
        context is None
        or context.num_replicas_in_sync == 1
        and not tf.distribute.has_strategy()
        or tf.__internal__.distribute.strategy_supports_no_merge_call()
    ):
        tf.cond(condition, lambda: optimizer.apply(grads, variables), lambda: None)
        return

    def cross_replica(distribution, condition, grads):
        first = distribution.experimental_local_results(condition)[0]

        def apply():
            distribution.extended.call_for_each_replica(optimizer.apply, args=(grads, variables))

        tf.cond(first, apply, lambda: None)

    context.merge_call(cross_replica, args=(condition, grads))


def clip_global_norm(grads, clip_norm, unscale=1.0):
    """Scales `grads` so that the gradient of the global batch, their sum over the replicas
    divided by `unscale` (the loss scale), has a norm of at most `clip_norm`
    (`torch.nn.utils.clip_grad_norm_`). Every replica scales by the same factor, so the
    update equals one device's on the whole batch. A non-finite norm makes the gradients
    non-finite, so the step is skipped.
    """
    present = [g for g in grads if g is not None]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        present = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    norm = tf.linalg.global_norm(present) / unscale
    scale = tf.minimum(clip_norm / norm, 1.0)  # In the gradients' dtype (float64 models too).
    return [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]


def check_choice(flag, value, choices):
    """Raises ValueError naming `--flag` when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"--{flag}={value}: choose one of {', '.join(choices)}")


class PretextModel(keras.Model):
    """A self-supervised model: subclasses define `compute_pretext` and `encoder`.

    Args:
      weight_decay: coupled L2 coefficient, applied to every trainable variable as
        PyTorch's optimizers do (the gradient of `weight_decay / 2 * ||w||^2`).

    `config` holds the subclass's constructor arguments (defaults filled in, without
    `weight_decay` and Keras' own), which `get_config` returns, so a subclass writes them
    once, in its signature. `grad_clip_norm` (set by the trainer, None: off) clips the norm
    of each update's gradient, weight decay included.
    """

    grad_clip_norm = None

    def __new__(cls, *args, **kwargs):
        # The one place that sees the subclass's arguments before its __init__ consumes them.
        instance = super().__new__(cls, *args, **kwargs)
        arguments = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        arguments.apply_defaults()
        skipped = {"self", "weight_decay", "kwargs"}
        instance._constructor_arguments = {k: v for k, v in arguments.arguments.items() if k not in skipped}
        return instance

    def __init__(self, weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.weight_decay = float(weight_decay)
        self.config = self._constructor_arguments

    def compute_pretext(self, data, training):
        """Returns a dict with the scalar `loss` and the method's metrics (scalars)."""
        raise NotImplementedError

    def build_encoder(self):
        """Returns the encoder (a Keras model sharing this model's weights): clips ->
        `{"embedding": [B, D], "feature_map": [B, t, h, w, D], ...}` (DESIGN contract);
        by default the model's `encoder` attribute."""
        return self.encoder

    def l2_penalty(self):
        """`weight_decay / 2 * sum ||w||^2` over the trainable variables, float32."""
        squares = [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in self.trainable_variables]
        return 0.5 * self.weight_decay * tf.add_n(squares)

    def loss_and_gradients(self, data):
        """The forward and backward pass: `(logs, objective, grads)`.

        `objective` is the float32 loss plus the L2 penalty; `grads` are of the scaled
        objective (divided by the replicas, times the loss scale).
        """
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            logs = self.compute_pretext(data, training=True)
            objective = tf.cast(logs["loss"], tf.float32)
            if self.weight_decay:
                objective += self.l2_penalty()
            # Gradients are summed over replicas: scale so they average the global batch.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(objective / replicas)
        return logs, objective, tape.gradient(scaled, variables)

    def train_step(self, data):
        compute = self.loss_and_gradients
        if getattr(self, "xla_gradients", False):
            # XLA compiles the forward and backward pass; the optimizer update stays outside
            # (it synchronises replicas, which an XLA cluster may not contain).
            if not hasattr(self, "_xla_loss_and_gradients"):
                self._xla_loss_and_gradients = tf.function(self.loss_and_gradients, jit_compile=True)
            compute = self._xla_loss_and_gradients
        logs, objective, grads = compute(data)
        scaling = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if self.grad_clip_norm:
            unscale = self.optimizer.dynamic_scale if scaling else 1.0
            grads = clip_global_norm(grads, self.grad_clip_norm, unscale)
        finite = tf.math.is_finite(objective)
        if not scaling:
            # A loss-scaling optimizer skips overflowing float16 steps itself; otherwise a
            # non-finite gradient is as fatal as a non-finite loss.
            finite = tf.logical_and(
                finite, tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
            )
        finite = all_replicas_agree(finite)
        apply_gradients_if(finite, self.optimizer, grads, self.trainable_variables)
        logs["finite"] = tf.cast(finite, tf.float32)
        return logs

    def test_step(self, data):
        return self.compute_pretext(data, training=False)

    def get_config(self):
        return {"weight_decay": self.weight_decay, "name": self.name, **self.config}
