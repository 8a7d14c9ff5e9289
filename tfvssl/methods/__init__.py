"""The table of methods: a `--method` name -> its `Method` class.

Each method is one module of this package (its flags, its training-example recipe, its
`Method`; the Keras model lives in `tfvssl.models`). Importing this package defines every
method's flags, so an entry point parses any method's command line. A new method is a
module here and one line in `METHODS`.
"""

from tfvssl.methods import dpc, memdpc, pace, tcp, vcop
from tfvssl.methods.base import Method

METHODS = {
    "dpc": dpc.DPC,
    "memdpc": memdpc.MemDPC,
    "tcp": tcp.TemporalCPC,
    "pace": pace.Pace,
    "vcop": vcop.VCOP,
}

__all__ = ["METHODS", "Method", "get_method"]


def get_method(name):
    """The `Method` class of `--method=name`; raises ValueError naming `--method`."""
    if name not in METHODS:
        raise ValueError(f"--method={name}: unknown method; choose one of {sorted(METHODS)}")
    return METHODS[name]
