"""Motion modalities made at preparation time: optical flow and grey image differences.

Both describe the motion between consecutive stored frames (after any frame-rate
resampling or striding), so a video of T frames has T - 1 motion frames: motion frame k
goes from frame k to frame k + 1. When RGB is stored beside a motion modality, its last
frame is dropped, so that frame k of every modality starts at the same instant and all
modalities have the same length (`records.make_sequence_example` requires it). Nothing
is invented to pad the count.

Storage, as the papers' authors store motion for 8-bit JPEG:
- flow: each component is clipped to `[-bound, bound]` pixels and mapped linearly to
  0-255 (zero motion is 127.5); the JPEG's channels are (x, y, 128). MemDPC uses
  bound 20 (`MEMDPC_FLOW_BOUND`, the default), Lorre et al.'s temporal CPC 10
  (`TCP_FLOW_BOUND`). The constant third channel is never read back
  (`pipeline.decode_frames` keeps x and y).
- diff: the grey frames (ITU-R 601 luma, OpenCV's `RGB2GRAY` weights) are subtracted
  (next minus current) and `(difference + 255) / 2` is stored as a one-channel JPEG, so
  zero change is mid-grey.

Flow algorithms (`FLOW_ALGORITHMS`):
- "tvl1": TV-L1 (Zach et al. 2007, as detailed by Sanchez et al., IPOL 2013), the
  algorithm of MemDPC and of temporal CPC's best results. OpenCV's
  `DualTVL1OpticalFlow` is used when `opencv-contrib-python-headless` is installed
  (`pip install tfvssl[flow]`); otherwise `tvl1_flow`, a NumPy implementation of the
  same algorithm with OpenCV's default parameters. The two agree to a few hundredths
  of a pixel on average, not bit for bit; the NumPy one is about 3x slower (about 5 s
  per 320x240 frame pair on one core).
- "dis": OpenCV's DIS flow (Kroeger et al. 2016), temporal CPC's fast option; it
  needs OpenCV (the `flow` extra).
"""

import numpy as np
import tensorflow as tf

from tfvssl.data import records

FLOW_ALGORITHMS = ("tvl1", "dis")
MEMDPC_FLOW_BOUND = 20.0
TCP_FLOW_BOUND = 10.0
MOTION_MODALITIES = ("flow", "diff")

# ITU-R 601 luma, as OpenCV's RGB2GRAY which the authors' extraction scripts use.
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
# The third flow channel: the grey of zero motion, as MemDPC's flow JPEGs.
_FLOW_FILL = 128


def to_grey(frame):
    """uint8 `[H, W, 3]` RGB -> float32 `[H, W]` luma in [0, 255]."""
    return np.asarray(frame, np.float32) @ _GREY_WEIGHTS


def quantize_flow(flow, bound=MEMDPC_FLOW_BOUND):
    """Clips and quantises a flow field to a storable image.

    Args:
      flow: float `[H, W, 2]` displacements (x, y) in pixels.
      bound: displacements are clipped to `[-bound, bound]`.

    Returns:
      uint8 `[H, W, 3]`: `round((clip(flow) + bound) * 255 / (2 * bound))` for x and y,
      then a constant channel of 128.
    """
    flow = np.clip(np.asarray(flow, np.float32), -bound, bound)
    levels = np.round((flow + bound) * (255.0 / (2.0 * bound))).astype(np.uint8)
    fill = np.full(levels.shape[:-1] + (1,), _FLOW_FILL, np.uint8)
    return np.concatenate([levels, fill], axis=-1)


def dequantize_flow(image, bound=MEMDPC_FLOW_BOUND):
    """Inverse of `quantize_flow` (up to the quantisation step `2 * bound / 255`).

    Args:
      image: uint8 `[..., C]`, C >= 2, channels 0 and 1 holding x and y.
      bound: the bound the flow was quantised with.

    Returns:
      float32 `[..., 2]` displacements in pixels.
    """
    levels = np.asarray(image, np.float32)[..., :2]
    return levels * (2.0 * bound / 255.0) - bound


def image_difference(frame, next_frame):
    """The stored grey difference between two consecutive RGB frames.

    Args:
      frame, next_frame: uint8 `[H, W, 3]`.

    Returns:
      uint8 `[H, W, 1]`: `round((grey(next_frame) - grey(frame) + 255) / 2)`.
    """
    difference = to_grey(next_frame) - to_grey(frame)
    return np.round((difference + 255.0) / 2.0).clip(0, 255).astype(np.uint8)[..., None]


# ---- TV-L1 in NumPy --------------------------------------------------------------------------


def _bilinear(image, x, y):
    """`image` `[H, W]` sampled at float coordinates `x`, `y` (same shape), edges repeated."""
    height, width = image.shape
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2) if width > 1 else np.zeros(x.shape, np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2) if height > 1 else np.zeros(y.shape, np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    wx, wy = x - x0, y - y0
    top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
    bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def _resize(image, shape):
    """Bilinear resize of `[H, W]` to `shape`, pixel centres aligned."""
    height, width = image.shape
    rows = (np.arange(shape[0]) + 0.5) * (height / shape[0]) - 0.5
    cols = (np.arange(shape[1]) + 0.5) * (width / shape[1]) - 0.5
    y, x = np.meshgrid(rows, cols, indexing="ij")
    return _bilinear(image, x, y)


def _gaussian_blur(image, sigma):
    """Separable Gaussian blur with edge repetition."""
    radius = max(1, int(np.ceil(2 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        length = image.shape[axis]
        image = sum(
            tap * np.take(padded, np.arange(offset, offset + length), axis=axis)
            for offset, tap in enumerate(taps)
        )
    return image


def _forward_gradient(field):
    """Forward differences, zero on the last column / row: `[H, W]` -> two `[H, W]`."""
    dx, dy = np.zeros_like(field), np.zeros_like(field)
    dx[:, :-1] = field[:, 1:] - field[:, :-1]
    dy[:-1, :] = field[1:, :] - field[:-1, :]
    return dx, dy


def _divergence(px, py):
    """Backward-difference divergence, the negative adjoint of `_forward_gradient`."""
    div = np.zeros_like(px)
    div[:, 0] = px[:, 0]
    div[:, 1:-1] += px[:, 1:-1] - px[:, :-2]
    div[:, -1] -= px[:, -2] if px.shape[1] > 1 else 0
    div[0, :] += py[0, :]
    div[1:-1, :] += py[1:-1, :] - py[:-2, :]
    if py.shape[0] > 1:
        div[-1, :] -= py[-2, :]
    return div


def _median_filter(field, size):
    radius = size // 2
    padded = np.pad(field, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return np.median(windows, axis=(-2, -1)).astype(field.dtype)


def _tvl1_one_scale(image0, image1, flow, *, tau, lambda_, theta, warps, epsilon,
                    inner_iterations, outer_iterations, median_filtering):
    """Refines `flow` `[H, W, 2]` at one scale by warps of the primal-dual TV-L1 scheme."""
    height, width = image0.shape
    grad_y, grad_x = np.gradient(image1)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    u1, u2 = flow[..., 0].copy(), flow[..., 1].copy()
    p11, p12, p21, p22 = (np.zeros_like(image0) for _ in range(4))
    lambda_theta = lambda_ * theta
    tau_theta = tau / theta
    for _ in range(warps):
        x, y = cols + u1, rows + u2
        warped, warped_x, warped_y = (_bilinear(a, x, y) for a in (image1, grad_x, grad_y))
        grad_squared = warped_x**2 + warped_y**2
        # The linearised brightness constancy residual is rho_c + gradient . u.
        rho_c = warped - warped_x * u1 - warped_y * u2 - image0
        for _ in range(outer_iterations):
            for _ in range(inner_iterations):
                rho = rho_c + warped_x * u1 + warped_y * u2
                # Pointwise minimiser of the data term (the thresholding step).
                safe = np.maximum(grad_squared, 1e-10)
                step = np.where(
                    rho < -lambda_theta * grad_squared, lambda_theta,
                    np.where(rho > lambda_theta * grad_squared, -lambda_theta, -rho / safe),
                )
                step = np.where(grad_squared < 1e-10, 0.0, step)
                v1, v2 = u1 + step * warped_x, u2 + step * warped_y
                new_u1 = v1 + theta * _divergence(p11, p12)
                new_u2 = v2 + theta * _divergence(p21, p22)
                error = np.mean((new_u1 - u1) ** 2 + (new_u2 - u2) ** 2)
                u1, u2 = new_u1, new_u2
                # Projected gradient ascent on the dual variables of the TV term.
                for first, second, field in ((p11, p12, u1), (p21, p22, u2)):
                    dx, dy = _forward_gradient(field)
                    norm = 1.0 + tau_theta * np.sqrt(dx**2 + dy**2)
                    first[:] = (first + tau_theta * dx) / norm
                    second[:] = (second + tau_theta * dy) / norm
                if error < epsilon**2:
                    break
            if median_filtering > 1:
                u1, u2 = _median_filter(u1, median_filtering), _median_filter(u2, median_filtering)
            if error < epsilon**2:
                break
    return np.stack([u1, u2], axis=-1)


def tvl1_flow(image0, image1, *, tau=0.25, lambda_=0.15, theta=0.3, scales=5, scale_step=0.8,
              warps=5, epsilon=0.01, inner_iterations=30, outer_iterations=10, median_filtering=5):
    """TV-L1 optical flow in NumPy, with the defaults of OpenCV's `DualTVL1OpticalFlow`.

    Coarse to fine over a Gaussian pyramid; at each scale, `warps` linearisations of the
    brightness constancy around the current flow, each solved by alternating the
    pointwise thresholding step and Chambolle's projection for the total variation,
    until the mean squared update falls below `epsilon**2`; a median filter of the flow
    after each outer iteration (Wedel et al. 2009).

    Args:
      image0, image1: float `[H, W]` grey images in [0, 255] (the parameters are tuned
        for that range), the flow maps image0's pixels into image1.
      tau, lambda_, theta: time step, data weight and coupling of the scheme.
      scales, scale_step: pyramid levels and the size ratio between them.
      warps: linearisations per scale.
      epsilon: stopping threshold on the update's root mean square.
      inner_iterations, outer_iterations: iteration caps.
      median_filtering: median window size, <= 1 for none.

    Returns:
      float32 `[H, W, 2]`: (x, y) such that `image0[y, x] ~ image1[y + fy, x + fx]`.
    """
    image0 = np.asarray(image0, np.float32)
    image1 = np.asarray(image1, np.float32)
    if image0.shape != image1.shape or image0.ndim != 2:
        raise ValueError(f"need two grey images of one size, got {image0.shape} and {image1.shape}")
    pyramid = [(image0, image1)]
    sigma = 0.6 * np.sqrt(1.0 / scale_step**2 - 1.0)
    for _ in range(scales - 1):
        previous = pyramid[-1][0].shape
        shape = (round(previous[0] * scale_step), round(previous[1] * scale_step))
        if min(shape) < 16:
            break
        pyramid.append(tuple(_resize(_gaussian_blur(image, sigma), shape) for image in pyramid[-1]))
    flow = np.zeros(pyramid[-1][0].shape + (2,), np.float32)
    for level, (scaled0, scaled1) in reversed(list(enumerate(pyramid))):
        if flow.shape[:2] != scaled0.shape:
            ratio = np.array([scaled0.shape[1] / flow.shape[1], scaled0.shape[0] / flow.shape[0]])
            flow = np.stack([_resize(flow[..., i], scaled0.shape) * ratio[i] for i in (0, 1)], -1)
        flow = _tvl1_one_scale(
            scaled0, scaled1, flow, tau=tau, lambda_=lambda_, theta=theta, warps=warps,
            epsilon=epsilon, inner_iterations=inner_iterations,
            outer_iterations=outer_iterations, median_filtering=median_filtering,
        )
    return flow.astype(np.float32)


# ---- Flow estimators ---------------------------------------------------------------------------


def _opencv():
    """The cv2 module, or None when OpenCV is not installed."""
    try:
        import cv2  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return cv2


class FlowEstimator:
    """Optical flow between two RGB frames with a chosen algorithm and backend.

    Args:
      algorithm: one of `FLOW_ALGORITHMS`.

    Attributes:
      backend: "opencv" or "numpy" (TV-L1 without OpenCV's contrib module).

    Raises:
      ValueError: unknown algorithm, or "dis" without OpenCV.
    """

    def __init__(self, algorithm="tvl1"):
        if algorithm not in FLOW_ALGORITHMS:
            raise ValueError(f"flow algorithm must be one of {FLOW_ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        cv2 = _opencv()
        if algorithm == "tvl1" and cv2 is not None and hasattr(cv2, "optflow"):
            self.backend = "opencv"
            self._estimator = cv2.optflow.DualTVL1OpticalFlow_create()
        elif algorithm == "tvl1":
            self.backend = "numpy"
            self._estimator = None
        elif cv2 is None:
            raise ValueError(
                "DIS optical flow needs OpenCV: pip install 'tfvssl[flow]' (or use tvl1, which "
                "falls back to NumPy)"
            )
        else:
            self.backend = "opencv"
            self._estimator = cv2.DISOpticalFlow_create()

    def describe(self):
        return f"{self.algorithm} ({self.backend})"

    def __call__(self, frame, next_frame):
        """The flow from `frame` to `next_frame`.

        Args:
          frame, next_frame: uint8 `[H, W, 3]` RGB.

        Returns:
          float32 `[H, W, 2]` displacements (x, y) in pixels.
        """
        grey, next_grey = to_grey(frame), to_grey(next_frame)
        if self._estimator is None:
            return tvl1_flow(grey, next_grey)
        # OpenCV's estimators take 8-bit grey images, as the authors' scripts pass them.
        as_uint8 = [np.round(image).astype(np.uint8) for image in (grey, next_grey)]
        return self._estimator.calc(*as_uint8, None).astype(np.float32)


# ---- Encoding a video's frames ----------------------------------------------------------------


def _encode_jpeg(image, quality):
    # Chroma subsampling would halve the resolution of the colour-difference planes that
    # carry x - y of a flow image; keep full resolution for every channel.
    return tf.io.encode_jpeg(image, quality=quality, chroma_downsampling=False).numpy()


class ModalityEncoder:
    """Turns a video's frames, fed one at a time, into the JPEGs of each modality.

        encoder = ModalityEncoder(("rgb", "flow"), jpeg_quality=90, flow=FlowEstimator())
        for frame in frames:
            encoder.add(frame)
        jpegs = encoder.result()  # {"rgb": [...], "flow": [...]}, equal lengths.

    Args:
      modalities: names among `rgb`, `flow`, `diff`.
      jpeg_quality: JPEG quality of every stored image.
      flow: a `FlowEstimator`, required with `flow`.
      flow_bound: flow clipping bound in pixels.
    """

    def __init__(self, modalities, jpeg_quality=90, flow=None, flow_bound=MEMDPC_FLOW_BOUND):
        unknown = set(modalities) - {"rgb", *MOTION_MODALITIES}
        if unknown or not modalities:
            raise ValueError(f"modalities must be among rgb, flow, diff; got {list(modalities)}")
        if "flow" in modalities and flow is None:
            raise ValueError("the flow modality needs a FlowEstimator")
        self.modalities = tuple(modalities)
        self.jpeg_quality = jpeg_quality
        self.flow = flow
        self.flow_bound = flow_bound
        self._jpegs = {name: [] for name in self.modalities}
        self._previous = None

    @property
    def needs_pixels(self):
        """Whether `add` needs the decoded frame even when its RGB JPEG is given."""
        return any(name in MOTION_MODALITIES for name in self.modalities)

    def add(self, frame, rgb_jpeg=None):
        """Adds the next frame.

        Args:
          frame: uint8 `[H, W, 3]` RGB, or None when `rgb_jpeg` is given and no motion
            modality is made.
          rgb_jpeg: the frame's RGB JPEG when it exists already (frame folders): stored as
            it is instead of re-encoding `frame`.
        """
        if "rgb" in self._jpegs:
            if rgb_jpeg is None:
                rgb_jpeg = records.encode_jpeg(frame, self.jpeg_quality)
            self._jpegs["rgb"].append(rgb_jpeg)
        if not self.needs_pixels:
            return
        if self._previous is not None:
            if "flow" in self._jpegs:
                flow = self.flow(self._previous, frame)
                self._jpegs["flow"].append(
                    _encode_jpeg(quantize_flow(flow, self.flow_bound), self.jpeg_quality)
                )
            if "diff" in self._jpegs:
                difference = image_difference(self._previous, frame)
                self._jpegs["diff"].append(_encode_jpeg(difference, self.jpeg_quality))
        self._previous = frame

    def result(self):
        """dict modality -> list of JPEG bytes, every list of the same length."""
        jpegs = dict(self._jpegs)
        if self.needs_pixels and "rgb" in jpegs:
            # No motion starts from the last frame (see the module docstring).
            jpegs["rgb"] = jpegs["rgb"][:-1]
        return jpegs
