"""Writes the tiny torch.save checkpoints of this folder (needs PyTorch; run by hand).

    pip install torch==2.13.0   # CPU wheel; PyTorch is not a tfvssl dependency
    python tests/convert/data/make_checkpoints.py

The expected values are written out in README.md beside this script.
"""

import argparse
import collections
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 3, (1, 2, 2))
        self.bn = torch.nn.BatchNorm3d(3)
        self.fc = torch.nn.Linear(3, 2)


def tiny_model():
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.copy_(torch.arange(24.0).reshape(3, 2, 1, 2, 2) / 8)
        model.conv.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
        model.bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        model.bn.bias.copy_(torch.tensor([0.5, 0.25, 0.125]))
        model.bn.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
        model.bn.running_var.copy_(torch.tensor([1.0, 4.0, 9.0]))
        model.bn.num_batches_tracked.fill_(5)
        # Stored transposed: a non-contiguous tensor with strides (1, 2).
        model.fc.weight.set_(torch.arange(6.0).reshape(3, 2).t())
        model.fc.bias.copy_(torch.tensor([-0.5, 0.5]))
    return model


def wrapped_checkpoint():
    """What the authors' training scripts save: a DataParallel state dict and more."""
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    model.fc.weight.grad = torch.ones(2, 3)
    optimizer.step()  # creates a momentum buffer, so the optimizer state holds a tensor
    state_dict = collections.OrderedDict(
        ("module." + name, tensor) for name, tensor in tiny_model().state_dict().items()
    )
    shared = torch.arange(10.0)
    state_dict["module.half"] = torch.tensor([0.5, -1.25, 3.0], dtype=torch.float16)
    state_dict["module.bf16"] = torch.tensor([1.5, -2.0, 0.0078125], dtype=torch.bfloat16)
    state_dict["module.shared"] = shared
    state_dict["module.slice"] = shared[4:7]  # storage offset 4 into `shared`
    return {
        "epoch": 7,
        "state_dict": state_dict,
        "optimizer": optimizer.state_dict(),
        "best_acc": np.float64(0.625),
        "args": argparse.Namespace(lr=0.001, net="r3d"),
    }


def main():
    torch.save(tiny_model().state_dict(), os.path.join(HERE, "plain_zip.pt"))
    torch.save(wrapped_checkpoint(), os.path.join(HERE, "wrapped_zip.pth"))
    torch.save(
        wrapped_checkpoint(),
        os.path.join(HERE, "wrapped_legacy.pth.tar"),
        _use_new_zipfile_serialization=False,
    )


if __name__ == "__main__":
    main()
