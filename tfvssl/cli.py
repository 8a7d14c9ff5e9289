"""What the command-line entry points share (kept free of TensorFlow: it runs before the
heavy imports)."""

import sys

from absl import logging


def failed(error, status=2):
    """Reports an error that ends a command, logged and printed as `error: ...` on stderr;
    returns the command's exit status (2: a bad request, before any work)."""
    logging.error("%s", error)
    print(f"error: {error}", file=sys.stderr)
    return status
