"""Writes `state_dict_shapes.json.gz`: the state-dict names and shapes of the original backbones.

Needs PyTorch, torchvision and checkouts of the authors' repositories (run by hand):

    python tests/convert/data/make_state_dict_shapes.py \
        --vcop=<xudejing/video-clip-order-prediction> --pace=<laura-wang/video-pace> \
        --dpc=<TengdaHan/DPC>

Each backbone is the module a method's checkpoint holds, without its classifier.
"""

import argparse
import gzip
import importlib.util
import json
import os

import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))


def _module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser()
    for repo in ("vcop", "pace", "dpc"):
        parser.add_argument(f"--{repo}", required=True)
    args = parser.parse_args()
    c3d = _module(os.path.join(args.vcop, "models", "c3d.py"))
    r3d = _module(os.path.join(args.vcop, "models", "r3d.py"))
    r21d = _module(os.path.join(args.vcop, "models", "r21d.py"))
    s3dg = _module(os.path.join(args.pace, "models", "s3d_g.py"))
    r2d3d = _module(os.path.join(args.dpc, "backbone", "resnet_2d3d.py"))
    resnet18_2d = torchvision.models.resnet18()
    resnet18_2d.conv1 = torch.nn.Conv2d(30, 64, 7, 2, 3, bias=False)  # 10 stacked RGB frames
    models = {
        "c3d": c3d.C3D(),
        "r3d": r3d.R3DNet((1, 1, 1, 1)),
        "r3d18": r3d.R3DNet((2, 2, 2, 2)),
        "r21d": r21d.R2Plus1DNet((1, 1, 1, 1)),
        "r21d18": r21d.R2Plus1DNet((2, 2, 2, 2)),
        "s3dg": s3dg.S3D(num_classes=4, space_to_depth=False),
        "r2d3d18": r2d3d.resnet18_2d3d_full(),
        "r2d3d34": r2d3d.resnet34_2d3d_full(),
        "resnet18_2d": resnet18_2d,
    }
    shapes = {
        name: {key: list(value.shape) for key, value in model.state_dict().items() if not key.startswith("fc.")}
        for name, model in models.items()
    }
    with gzip.open(os.path.join(HERE, "state_dict_shapes.json.gz"), "wt") as file:
        json.dump(shapes, file, indent=0)


if __name__ == "__main__":
    main()
