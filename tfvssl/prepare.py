"""Videos -> TFRecord shards: `python -m tfvssl.prepare --dataset=<kind> ...`.

    python -m tfvssl.prepare --dataset=ucf101 --video_root=UCF-101 \\
        --split_dir=ucfTrainTestlist --split_number=1 --output_dir=data/ucf101_s1 --workers=8

Datasets (`--dataset`), their inputs and split files (formats in `tfvssl.data.manifests`):
  ucf101    --video_root (class folders of .avi, or of frame folders), --split_dir
            (classInd.txt, trainlist0N.txt, testlist0N.txt), --split_number
  hmdb51    --video_root, --split_dir (<class>_test_splitN.txt), --split_number
  kinetics  --video_root (searched recursively), --annotations (CSV files)
  oops      --video_root (oops_video with train/ and val/), --annotations
            (transition_times.json), optional --split_dir (*_filtered.txt lists),
            --oops_median
  folder    --video_root (one folder per class), --split
  csv       --annotations (rows path,label[,split]), optional --video_root, --split
  frames    --video_root (<class>/<video>/image_00001.jpg or frame000001.jpg), --split

Writes `<output_dir>/<split>/<split>-NNNNN.tfrecord`, `dataset_info.json` and
`summary.json` (every video, converted or rejected with its reason). Re-running the same
command resumes: finished shards are kept, the others redone. A second conversion into the
same directory refuses to start while the first runs.

    python -m tfvssl.prepare --verify --output_dir=data/ucf101_s1

checks a dataset root instead: every shard read to its end, every record parsed, frame and
record counts matched against `summary.json` and `dataset_info.json`.
"""

import os
import sys

from absl import app, flags

from tfvssl.data import manifests, modalities, shards

# Per dataset: the flags it requires and how its manifest is read.
_READERS = {
    "ucf101": (("video_root", "split_dir"), lambda fv: manifests.ucf101(fv.video_root, fv.split_dir, fv.split_number)),
    "hmdb51": (("video_root", "split_dir"), lambda fv: manifests.hmdb51(fv.video_root, fv.split_dir, fv.split_number)),
    "kinetics": (("video_root", "annotations"), lambda fv: manifests.kinetics(fv.video_root, fv.annotations)),
    "oops": (
        ("video_root", "annotations"),
        lambda fv: manifests.oops(fv.video_root, fv.annotations[0], fv.split_dir, fv.oops_median),
    ),
    "csv": (("annotations",), lambda fv: manifests.csv_list(fv.annotations[0], fv.split, fv.video_root)),
    "folder": (("video_root",), lambda fv: manifests.folder_per_class(fv.video_root, fv.split)),
    "frames": (("video_root",), lambda fv: manifests.frame_folders(fv.video_root, fv.split)),
}


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of `python -m tfvssl.prepare` (only its command line calls this, so
    that importing the module next to `tfvssl.pretrain` defines nothing twice)."""
    defaults = shards.Options()
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("dataset", None, list(_READERS), "Kind of input (see the module docstring).", **fv)
    flags.DEFINE_string("video_root", None, "Folder of the videos or frame folders.", **fv)
    flags.DEFINE_string("split_dir", None, "Folder of the official split files (ucf101, hmdb51, oops).", **fv)
    flags.DEFINE_integer("split_number", 1, "Official split (1-3) of ucf101 and hmdb51.", **fv)
    flags.DEFINE_list("annotations", [], "kinetics: CSV files; oops: transition_times.json; csv: the list.", **fv)
    flags.DEFINE_string("split", "train", "Split name for folder, frames and csv rows without one.", **fv)
    flags.DEFINE_enum(
        "oops_median", "valid", list(manifests.OOPS_MEDIANS),
        "Oops failure time from the annotators: valid = median of the valid times (the paper); "
        "upper = element len//2 of all sorted times (the Oops code).", **fv,
    )
    flags.DEFINE_string("output_dir", None, "Dataset root to write.", **fv)
    flags.DEFINE_list("modality", list(defaults.modality), "Stored modalities: rgb, flow, diff.", **fv)
    flags.DEFINE_float("fps", None, "Resample to this frame rate (default: keep every source frame).", **fv)
    flags.DEFINE_integer("frame_stride", defaults.frame_stride, "Keep every n-th frame (instead of --fps).", **fv)
    flags.DEFINE_integer(
        "short_side", None,
        "Resize so the short side is this many pixels (DPC: 240 for UCF101/HMDB51, 150 for "
        "Kinetics at 128 px; temporal CPC 256). Default: keep the size.", **fv,
    )
    flags.DEFINE_integer(
        "jpeg_quality", defaults.jpeg_quality, "JPEG quality (DPC's extraction 80, MemDPC's 100).", **fv
    )
    flags.DEFINE_integer("min_frames", defaults.min_frames, "Reject videos with fewer stored frames.", **fv)
    flags.DEFINE_enum(
        "flow_algorithm", defaults.flow_algorithm, list(modalities.FLOW_ALGORITHMS),
        "tvl1 (OpenCV contrib when installed, else NumPy) or dis (OpenCV).", **fv,
    )
    flags.DEFINE_float(
        "flow_bound", defaults.flow_bound,
        f"Flow clipping bound in pixels: {modalities.MEMDPC_FLOW_BOUND:g} as MemDPC, "
        f"{modalities.TCP_FLOW_BOUND:g} as temporal CPC.", **fv,
    )
    flags.DEFINE_float("frames_fps", defaults.frames_fps, "Frame rate of extracted-frame folders.", **fv)
    flags.DEFINE_integer("shard_size", defaults.shard_size, "Videos per shard.", **fv)
    flags.DEFINE_integer("seed", defaults.seed, "Seed of the order of videos in the shards.", **fv)
    flags.DEFINE_integer("workers", 1, "Processes converting shards in parallel.", **fv)
    flags.DEFINE_boolean("overwrite", False, "Delete an earlier conversion in --output_dir first.", **fv)
    flags.DEFINE_boolean(
        "verify", False,
        "Check the dataset root --output_dir instead of converting: every shard read to its end, every "
        "record parsed, frame and record counts matched against summary.json and dataset_info.json; "
        "exits 1 listing the problems.", **fv,
    )


def _require(flag_values, *names):
    for name in names:
        if not flag_values[name].value:
            raise ValueError(f"--{name}: required with --dataset={flag_values.dataset}")


def _check_paths(flag_values):
    """Names the flag of an input folder or file that does not exist."""
    for name in ("video_root", "split_dir"):
        path = flag_values[name].value
        if path and not os.path.isdir(path):
            raise ValueError(f"--{name}={path}: no such directory")
    for path in flag_values.annotations:
        if not os.path.isfile(path):
            raise ValueError(f"--annotations={path}: no such file")


def manifest_from_flags(flag_values=flags.FLAGS):
    """The `Manifest` the flags describe; raises ValueError naming a missing flag or path."""
    _require(flag_values, "dataset")
    required, read = _READERS[flag_values.dataset]
    _require(flag_values, *required)
    _check_paths(flag_values)
    return read(flag_values)


def options_from_flags(flag_values=flags.FLAGS):
    """The `shards.Options` of the flags."""
    fv = flag_values
    return shards.Options(
        modality=tuple(fv.modality), fps=fv.fps, frame_stride=fv.frame_stride,
        short_side=fv.short_side, jpeg_quality=fv.jpeg_quality, min_frames=fv.min_frames,
        flow_algorithm=fv.flow_algorithm, flow_bound=fv.flow_bound, frames_fps=fv.frames_fps,
        shard_size=fv.shard_size, seed=fv.seed,
    )


def run(flag_values=flags.FLAGS):
    """Converts the dataset the flags describe; returns the summary."""
    _require(flag_values, "output_dir")
    options = options_from_flags(flag_values)
    manifest = manifest_from_flags(flag_values)
    if not manifest.entries:
        raise ValueError(f"--dataset={flag_values.dataset}: the split files list no videos")
    summary = shards.prepare(
        manifest, flag_values.output_dir, options, workers=flag_values.workers,
        overwrite=flag_values.overwrite,
    )
    print(
        f"{summary['num_converted']} of {summary['num_videos']} videos converted into "
        f"{flag_values.output_dir}; rejected: {summary['rejected_by_reason'] or 'none'} "
        f"(details in {os.path.join(flag_values.output_dir, shards.SUMMARY)})"
    )
    return summary


def verify(flag_values=flags.FLAGS):
    """Checks the dataset root `--output_dir` and prints what it found; returns the problems."""
    if not flag_values.output_dir:
        raise ValueError("--output_dir: the dataset root to verify is required with --verify")
    records_read, problems = shards.verify(flag_values.output_dir)
    for problem in problems:
        print(problem)
    splits = ", ".join(f"{split} {count}" for split, count in records_read.items())
    print(f"{flag_values.output_dir}: {sum(records_read.values())} records read ({splits}); "
          f"{len(problems) or 'no'} problem(s)")
    return problems


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        if flags.FLAGS.verify:
            return 1 if verify() else 0
        run()
    except ValueError as error:
        sys.exit(f"error: {error}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
