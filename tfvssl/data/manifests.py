"""Lists of (video, label, split) read from each dataset's official split files.

Every reader returns a `Manifest`: the class names in label order and one `VideoEntry` per
video. Labels are 0-based indices into `class_names` (UCF101's `classInd.txt` counts from
1: its index i is stored as i - 1), -1 for unlabeled videos. Paths are joined to the
video root but not checked: a missing file is rejected, with its reason, by the
conversion (`conversion.py`), not here.

A video path may also name a folder of extracted JPEG frames: `.../v_X_g01_c01.avi` is
read from the folder `.../v_X_g01_c01/` when only the folder exists, so the official
split files of UCF101 and HMDB51 also index the frame folders the DPC/MemDPC and Pace
repositories extract (`image_%05d.jpg`, `frame%06d.jpg`).

Formats:
- UCF101 (`ucfTrainTestlist/`): `classInd.txt` lines `1 ApplyEyeMakeup`;
  `trainlist0N.txt` lines `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`;
  `testlist0N.txt` lines `ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`.
- HMDB51 (`testTrainMulti_7030_splits/`): `<class>_test_split<N>.txt` lines
  `<video>.avi <t>` with t = 1 train, 2 test, 0 unused; videos in `<root>/<class>/`;
  classes in sorted order.
- Kinetics: CSV with a header naming at least `youtube_id`, `time_start`, `time_end`
  and, for labeled splits, `label`; the split is the `split` column, else the file
  name. Classes are the sorted labels. A video is looked up anywhere under the root as
  `<youtube_id>_<start:06d>_<end:06d>.<ext>` (already trimmed, as the common
  downloaders write it) or `<youtube_id>.<ext>` (the full video, trimmed to
  `[time_start, time_end]` at conversion).
- Oops: `transition_times.json` maps a video name to `t` (annotators' failure times in
  seconds, negative when absent), `rel_t` (the same relative to the duration) and `len`;
  videos are `<root>/<split>/<name>.mp4` for the splits `train` and `val`, optionally
  restricted by `<split>_filtered.txt` lists. Unlabeled (-1), with `t_fail` and `rel_t`.
- Folder per class: `<root>/<class>/<video>`; frame folders: `<root>/<class>/<video>/`
  holding JPEG frames. One split, named by the caller.
- CSV: rows `path,label` (an optional header `path,label[,split]`, an optional third
  column `split`); relative paths are relative to the CSV's folder; classes sorted; an
  empty label is unlabeled.
"""

import csv
import dataclasses
import json
import os
import re
from typing import Optional

import numpy as np
from absl import logging

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp")

# Frame file names of extracted-frame folders: DPC/MemDPC `image_00001.jpg`, Pace (from
# the two-stream "jpegs_256" release) `frame000001.jpg`, mmaction/TSN `img_00001.jpg`.
FRAME_FILE_PATTERN = re.compile(r"^(?:image_|frame|img_)(\d+)\.jpe?g$", re.IGNORECASE)

OOPS_MEDIANS = ("valid", "upper")


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video to convert.

    Attributes:
      name: the video's id, its path relative to the dataset root (stored as
        `video/filename`).
      path: the video file or frame folder to read.
      split: split name (`train`, `test`, `val`, ...).
      label_index: 0-based class index, -1 when unlabeled.
      label: class name, "" when unlabeled.
      start, end: seconds to keep of the file (Kinetics full-length videos), or None.
      t_fail, rel_t: Oops failure time in seconds and relative to the duration, or None.
    """

    name: str
    path: str
    split: str
    label_index: int = -1
    label: str = ""
    start: Optional[float] = None
    end: Optional[float] = None
    t_fail: Optional[float] = None
    rel_t: Optional[float] = None


@dataclasses.dataclass
class Manifest:
    """A dataset's class names (index order) and its videos."""

    name: str
    class_names: list
    entries: list

    def splits(self):
        """Split names in order of first appearance."""
        return list(dict.fromkeys(entry.split for entry in self.entries))


def _lines(path):
    """Non-empty stripped lines of a text file (official lists have CRLF endings)."""
    with open(path, encoding="utf-8") as f:
        return [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]


def _check_split_number(split_number):
    if split_number not in (1, 2, 3):
        raise ValueError(f"split_number must be 1, 2 or 3, got {split_number}")


# ---- UCF101 ---------------------------------------------------------------------------------


def read_ucf101_class_index(path):
    """Class names from UCF101's `classInd.txt` (`<1-based index> <name>` lines).

    Returns:
      The names, position i holding the class of 1-based index i + 1.

    Raises:
      ValueError: malformed lines or indices that are not exactly 1..N.
    """
    names = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{number}: expected '<index> <class>', got {line!r}")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"{path}: class indices must be 1..{len(names)}, got {sorted(names)}")
    return [names[index] for index in range(1, len(names) + 1)]


def ucf101(video_root, split_dir, split_number=1):
    """UCF101 with its official split `split_number` (1-3): `train` and `test`.

    Args:
      video_root: the folder holding `<class>/<video>.avi` (the `UCF-101` folder of the
        archive), or frame folders `<class>/<video>/`.
      split_dir: the folder of `classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`.
      split_number: 1, 2 or 3.

    Raises:
      ValueError: a list names an unknown class or a label that contradicts its folder.
    """
    _check_split_number(split_number)
    class_names = read_ucf101_class_index(os.path.join(split_dir, "classInd.txt"))
    index_of = {name: index for index, name in enumerate(class_names)}
    entries = []
    for split, prefix in (("train", "trainlist"), ("test", "testlist")):
        list_path = os.path.join(split_dir, f"{prefix}{split_number:02d}.txt")
        for number, line in _lines(list_path):
            parts = line.split()
            relative = parts[0].replace("\\", "/")
            class_name = relative.split("/")[0]
            if class_name not in index_of:
                raise ValueError(f"{list_path}:{number}: class {class_name!r} is not in classInd.txt")
            label_index = index_of[class_name]
            if len(parts) > 1 and int(parts[1]) != label_index + 1:
                raise ValueError(
                    f"{list_path}:{number}: label {parts[1]} but classInd.txt gives "
                    f"{class_name} = {label_index + 1}"
                )
            entries.append(VideoEntry(
                name=relative, path=os.path.join(video_root, relative), split=split,
                label_index=label_index, label=class_name,
            ))
    return Manifest("ucf101", class_names, entries)


# ---- HMDB51 ---------------------------------------------------------------------------------


def hmdb51(video_root, split_dir, split_number=1):
    """HMDB51 with its official split `split_number` (1-3): `train` and `test`.

    Args:
      video_root: the folder holding `<class>/<video>.avi` (or frame folders).
      split_dir: the folder of the `<class>_test_split<N>.txt` files.
      split_number: 1, 2 or 3.

    Raises:
      ValueError: no split file, or a line whose type is not 0, 1 or 2.
    """
    _check_split_number(split_number)
    suffix = f"_test_split{split_number}.txt"
    files = sorted(name for name in os.listdir(split_dir) if name.endswith(suffix))
    if not files:
        raise ValueError(f"{split_dir}: no *{suffix} files")
    class_names = [name[: -len(suffix)] for name in files]
    entries = []
    for label_index, (class_name, file_name) in enumerate(zip(class_names, files)):
        list_path = os.path.join(split_dir, file_name)
        for number, line in _lines(list_path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{list_path}:{number}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] == "0":  # Not used in this split.
                continue
            relative = f"{class_name}/{parts[0]}"
            entries.append(VideoEntry(
                name=relative, path=os.path.join(video_root, relative),
                split="train" if parts[1] == "1" else "test",
                label_index=label_index, label=class_name,
            ))
    return Manifest("hmdb51", class_names, entries)


# ---- Kinetics -------------------------------------------------------------------------------


def _index_videos(root):
    """Maps each video file's name without extension to its path, for files under `root`."""
    index = {}
    for directory, _, files in os.walk(root):
        for file_name in sorted(files):
            stem, extension = os.path.splitext(file_name)
            if extension.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, os.path.join(directory, file_name))
    return index


def kinetics(video_root, csv_paths):
    """Kinetics (400/600/700) from its annotation CSVs.

    Args:
      video_root: folder searched recursively for the videos.
      csv_paths: the CSV files (e.g. `train.csv`, `validate.csv`).

    Raises:
      ValueError: a CSV lacks one of the required columns.
    """
    rows = []
    for csv_path in csv_paths:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{csv_path}: missing columns {sorted(missing)}")
            file_split = os.path.splitext(os.path.basename(csv_path))[0]
            for row in reader:
                rows.append((row, row.get("split") or file_split))
    class_names = sorted({row["label"] for row, _ in rows if row.get("label")})
    index_of = {name: index for index, name in enumerate(class_names)}
    videos = _index_videos(video_root)
    entries = []
    for row, split in rows:
        start, end = float(row["time_start"]), float(row["time_end"])
        trimmed_name = f"{row['youtube_id']}_{int(start):06d}_{int(end):06d}"
        label = row.get("label") or ""
        if trimmed_name in videos:
            path, trim = videos[trimmed_name], (None, None)
        elif row["youtube_id"] in videos:
            path, trim = videos[row["youtube_id"]], (start, end)
        else:  # Not downloaded: the conversion reports it as not found.
            path, trim = os.path.join(video_root, label, trimmed_name + ".mp4"), (None, None)
        entries.append(VideoEntry(
            name=trimmed_name, path=path, split=split,
            label_index=index_of.get(label, -1), label=label, start=trim[0], end=trim[1],
        ))
    return Manifest("kinetics", class_names, entries)


# ---- Oops -----------------------------------------------------------------------------------


def oops_failure_time(times, rule="valid"):
    """One failure time from the annotators' times (negative = no failure seen).

    Args:
      times: the annotators' times (`t` or `rel_t` of `transition_times.json`).
      rule: "valid" = the median of the non-negative times (the paper's "median of the
        annotations", as MemDPC's Oops evaluation); "upper" = the element at position
        len // 2 of all sorted times, absent ones included (the Oops code's rule).

    Returns:
      The time, or None when no valid time results.
    """
    if rule not in OOPS_MEDIANS:
        raise ValueError(f"oops median rule must be one of {OOPS_MEDIANS}, got {rule!r}")
    times = sorted(float(t) for t in times)
    if rule == "valid":
        valid = [t for t in times if t >= 0]
        return float(np.median(valid)) if valid else None
    if not times or times[len(times) // 2] < 0:
        return None
    return times[len(times) // 2]


def oops(video_root, annotations_path, split_dir=None, median="valid"):
    """The Oops dataset (`train` and `val`) with failure times.

    Args:
      video_root: the `oops_video` folder, holding `train/` and `val/`.
      annotations_path: `transition_times.json`.
      split_dir: optional folder of `train_filtered.txt` / `val_filtered.txt` (video names,
        one per line, with or without extension) restricting each split.
      median: the rule turning annotator times into one (`oops_failure_time`).
    """
    with open(annotations_path, encoding="utf-8") as f:
        annotations = json.load(f)
    entries = []
    for split in ("train", "val"):
        split_videos = os.path.join(video_root, split)
        listed = os.path.join(split_dir, f"{split}_filtered.txt") if split_dir else None
        if listed and os.path.isfile(listed):
            names = [os.path.splitext(line)[0] for _, line in _lines(listed)]
        elif os.path.isdir(split_videos):
            names = sorted(
                os.path.splitext(name)[0] for name in os.listdir(split_videos)
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS
            )
        else:
            continue
        for name in names:
            annotation = annotations.get(name, {})
            entries.append(VideoEntry(
                name=f"{split}/{name}.mp4", path=os.path.join(split_videos, name + ".mp4"),
                split=split,
                t_fail=oops_failure_time(annotation.get("t", []), median),
                rel_t=oops_failure_time(annotation.get("rel_t", []), median),
            ))
    return Manifest("oops", [], entries)


# ---- Folders and CSV --------------------------------------------------------------------------


def frame_files(folder):
    """The extracted-frame JPEGs of a folder, ordered by frame number.

    Returns:
      Paths of the files matching `FRAME_FILE_PATTERN` (other files, such as MemDPC's
      `flow_*.jpg`, are ignored).
    """
    numbered = []
    for name in os.listdir(folder):
        match = FRAME_FILE_PATTERN.match(name)
        if match:
            numbered.append((int(match.group(1)), name))
    return [os.path.join(folder, name) for _, name in sorted(numbered)]


def _class_folders(root):
    classes = sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
    if not classes:
        raise ValueError(f"{root}: no class folders")
    return classes


def _warn_of_empty_classes(root, class_names, entries):
    """One warning line for class folders without a video (they stay classes, so the labels of
    the others do not shift)."""
    empty = sorted(set(class_names) - {entry.label for entry in entries})
    if empty:
        logging.warning("%s: %d class folder(s) hold no videos and stay classes with 0 videos: %s",
                        root, len(empty), ", ".join(empty))


def folder_per_class(video_root, split="train"):
    """Videos in one folder per class: `<root>/<class>/<video file>`, classes sorted."""
    class_names = _class_folders(video_root)
    entries = []
    for label_index, class_name in enumerate(class_names):
        for file_name in sorted(os.listdir(os.path.join(video_root, class_name))):
            if os.path.splitext(file_name)[1].lower() in VIDEO_EXTENSIONS:
                relative = f"{class_name}/{file_name}"
                entries.append(VideoEntry(
                    name=relative, path=os.path.join(video_root, relative), split=split,
                    label_index=label_index, label=class_name,
                ))
    _warn_of_empty_classes(video_root, class_names, entries)
    return Manifest("folder", class_names, entries)


def frame_folders(frames_root, split="train"):
    """Extracted frames in one folder per class: `<root>/<class>/<video>/image_00001.jpg`."""
    class_names = _class_folders(frames_root)
    entries = []
    for label_index, class_name in enumerate(class_names):
        class_dir = os.path.join(frames_root, class_name)
        for video in sorted(os.listdir(class_dir)):
            if os.path.isdir(os.path.join(class_dir, video)):
                relative = f"{class_name}/{video}"
                entries.append(VideoEntry(
                    name=relative, path=os.path.join(frames_root, relative), split=split,
                    label_index=label_index, label=class_name,
                ))
    _warn_of_empty_classes(frames_root, class_names, entries)
    return Manifest("frames", class_names, entries)


def _natural_key(label):
    """Numeric labels sort as numbers, others as text."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def csv_list(csv_path, split="train", video_root=None):
    """Videos listed as `path,label[,split]` rows.

    Args:
      csv_path: the CSV file.
      split: split of rows without a split column.
      video_root: folder relative paths start from (default: the CSV's folder).

    Raises:
      ValueError: a row with no path.
    """
    video_root = video_root or os.path.dirname(os.path.abspath(csv_path))
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            row = [cell.strip() for cell in row]
            if not row or not any(row):
                continue
            if number == 1 and [cell.lower() for cell in row[:2]] == ["path", "label"]:
                continue
            if not row[0]:
                raise ValueError(f"{csv_path}:{number}: empty path")
            rows.append((row[0], row[1] if len(row) > 1 else "", row[2] if len(row) > 2 and row[2] else split))
    class_names = sorted({label for _, label, _ in rows if label}, key=_natural_key)
    index_of = {name: index for index, name in enumerate(class_names)}
    entries = [
        VideoEntry(
            name=path, path=os.path.join(video_root, path), split=row_split,
            label_index=index_of.get(label, -1), label=label,
        )
        for path, label, row_split in rows
    ]
    return Manifest("csv", class_names, entries)
