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
command resumes: finished shards are kept, the others redone.
"""

import os
import sys

from absl import app, flags

from tfvssl.data import conversion, manifests, modalities

DATASETS = ("ucf101", "hmdb51", "kinetics", "oops", "folder", "csv", "frames")


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of `python -m tfvssl.prepare` (only its command line calls this, so
    that importing the module next to `tfvssl.pretrain` defines nothing twice)."""
    defaults = conversion.Options()
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("dataset", None, DATASETS, "Kind of input (see the module docstring).", **fv)
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


def _require(flag_values, *names):
    for name in names:
        if not flag_values[name].value:
            raise ValueError(f"--{name}: required with --dataset={flag_values.dataset}")


def manifest_from_flags(flag_values=flags.FLAGS):
    """The `Manifest` the flags describe; raises ValueError naming a missing flag."""
    fv = flag_values
    _require(fv, "dataset")
    if fv.dataset in ("ucf101", "hmdb51"):
        _require(fv, "video_root", "split_dir")
        reader = manifests.ucf101 if fv.dataset == "ucf101" else manifests.hmdb51
        return reader(fv.video_root, fv.split_dir, fv.split_number)
    if fv.dataset == "kinetics":
        _require(fv, "video_root", "annotations")
        return manifests.kinetics(fv.video_root, fv.annotations)
    if fv.dataset == "oops":
        _require(fv, "video_root", "annotations")
        return manifests.oops(fv.video_root, fv.annotations[0], fv.split_dir, fv.oops_median)
    if fv.dataset == "csv":
        _require(fv, "annotations")
        return manifests.csv_list(fv.annotations[0], fv.split, fv.video_root)
    _require(fv, "video_root")
    reader = manifests.folder_per_class if fv.dataset == "folder" else manifests.frame_folders
    return reader(fv.video_root, fv.split)


def options_from_flags(flag_values=flags.FLAGS):
    """The `conversion.Options` of the flags."""
    fv = flag_values
    return conversion.Options(
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
    summary = conversion.prepare(
        manifest, flag_values.output_dir, options, workers=flag_values.workers,
        overwrite=flag_values.overwrite,
    )
    print(
        f"{summary['num_converted']} of {summary['num_videos']} videos converted into "
        f"{flag_values.output_dir}; rejected: {summary['rejected_by_reason'] or 'none'} "
        f"(details in {os.path.join(flag_values.output_dir, conversion.SUMMARY)})"
    )
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        run()
    except ValueError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
