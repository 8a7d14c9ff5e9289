"""End-to-end tests of `tfvssl.prepare`: small real videos (MPEG-4 .avi as UCF101 and HMDB51
ship, H.264 .mp4) and official-format split files in, shards that every method trains on out;
rejections with named reasons, resume, flow and difference modalities, frame folders."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from conftest import TINY_FLAGS
from test_sources import write_audio_only

from tfvssl import methods, prepare, pretrain
from tfvssl.data import manifests, modalities, pipeline, records, shards, sources, synthetic
from tfvssl.train import trainer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
NUM_FRAMES, HEIGHT, WIDTH = 32, 40, 48


def render(class_index, seed, num_frames=NUM_FRAMES):
    """uint8 `[T, 40, 48, 3]` frames of the embedded dataset's motion class."""
    config = synthetic.SyntheticConfig(num_classes=3, resolution=WIDTH, num_frames=num_frames)
    return synthetic.render_video(config, class_index, np.random.default_rng(seed))[:, :HEIGHT]


def write(path, text_or_bytes):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    mode = "wb" if isinstance(text_or_bytes, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"newline": ""})) as f:
        f.write(text_or_bytes)


def save_video(path, frames, fps, **kwargs):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    sources.write_video(path, frames, fps, **kwargs)


def read_records(root, split, modality=("rgb",)):
    """The parsed records of a split, by filename."""
    files = records.list_shards(str(root), split)
    parsed = [records.parse_sequence_example(r, modality) for r in tf.data.TFRecordDataset(files)]
    return {video["filename"].numpy().decode(): video for video in parsed}


def run_prepare(*args):
    """`python -m tfvssl.prepare` in this process, on its own flags."""
    flag_values = flags.FlagValues()
    prepare.define_flags(flag_values)
    flag_values(["prepare", *args])
    return prepare.run(flag_values)


def reasons(summary):
    return {v["video"]: v.get("reason", v["status"]) for v in summary["videos"]}


# ---- UCF101: the main case ------------------------------------------------------------------------

UCF_CLASSES = ["ApplyEyeMakeup", "Basketball"]
GOOD_TRAIN = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in UCF_CLASSES for g in (8, 9)]
GOOD_TEST = [f"{c}/v_{c}_g01_c01.avi" for c in UCF_CLASSES]
BAD_TRAIN = {
    "Basketball/v_Basketball_g10_c01.avi": "unreadable",  # Corrupt: random bytes.
    "Basketball/v_Basketball_g11_c01.avi": "empty file",  # Zero bytes.
    "Basketball/v_Basketball_g12_c01.avi": "no video stream",  # Audio only.
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g10_c01.avi": "too short",  # 4 frames < --min_frames=8.
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g11_c01.avi": "not found",
}


@pytest.fixture(scope="module")
def ucf101_files(tmp_path_factory):
    """A UCF101 tree (`UCF-101/<class>/<video>.avi`) and its official lists, split 1."""
    base = tmp_path_factory.mktemp("ucf101")
    videos, lists = base / "UCF-101", base / "ucfTrainTestlist"
    for seed, name in enumerate(GOOD_TRAIN + GOOD_TEST):
        class_index = UCF_CLASSES.index(name.split("/")[0])
        save_video(videos / name, render(class_index, seed), fps=25)
    bad = list(BAD_TRAIN)
    write(videos / bad[0], np.random.default_rng(0).bytes(4000))
    write(videos / bad[1], b"")
    os.makedirs(videos / "Basketball", exist_ok=True)
    write_audio_only(videos / bad[2])
    save_video(videos / bad[3], render(0, 99, num_frames=4), fps=25)
    # classInd.txt is 1-based; the lists have CRLF endings.
    write(lists / "classInd.txt", "".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)))
    train_lines = [f"{name} {UCF_CLASSES.index(name.split('/')[0]) + 1}" for name in GOOD_TRAIN + bad]
    write(lists / "trainlist01.txt", "".join(line + "\r\n" for line in train_lines))
    write(lists / "testlist01.txt", "".join(name + "\r\n" for name in GOOD_TEST))
    return videos, lists


@pytest.fixture(scope="module")
def ucf101_dataset(ucf101_files, tmp_path_factory):
    videos, lists = ucf101_files
    output = tmp_path_factory.mktemp("ucf101_records")
    summary = run_prepare(
        "--dataset=ucf101", f"--video_root={videos}", f"--split_dir={lists}", "--split_number=1",
        f"--output_dir={output}", "--min_frames=8", "--shard_size=3",
    )
    return output, summary


def test_ucf101_rejections_are_named_and_the_other_videos_convert(ucf101_dataset):
    output, summary = ucf101_dataset

    assert reasons(summary) == {**BAD_TRAIN, **{name: "converted" for name in GOOD_TRAIN + GOOD_TEST}}
    assert summary["rejected_by_reason"] == {reason: 1 for reason in BAD_TRAIN.values()}
    assert (summary["num_videos"], summary["num_converted"], summary["num_rejected"]) == (11, 6, 5)
    with open(output / shards.SUMMARY) as f:
        assert json.load(f) == summary
    too_short = next(v for v in summary["videos"] if v.get("reason") == "too short")
    assert "4 frames < --min_frames=8" in too_short["detail"]


def test_ucf101_records_hold_every_frame_with_0_based_labels(ucf101_dataset):
    output, _ = ucf101_dataset

    train = read_records(output, "train")

    assert sorted(train) == sorted(GOOD_TRAIN)
    for name, video in train.items():
        class_name = name.split("/")[0]
        assert video["label"] == UCF_CLASSES.index(class_name)  # classInd 1 -> 0.
        assert video["label_string"].numpy().decode() == class_name
        assert int(video["num_frames"]) == NUM_FRAMES and float(video["fps"]) == 25.0
        frame = tf.io.decode_jpeg(video["rgb"][5]).numpy()
        assert frame.shape == (HEIGHT, WIDTH, 3)
    assert sorted(read_records(output, "test")) == sorted(GOOD_TEST)


def test_ucf101_dataset_info_lists_classes_splits_and_shards(ucf101_dataset):
    output, _ = ucf101_dataset

    info = records.read_dataset_info(str(output))

    assert info["class_names"] == UCF_CLASSES and info["num_classes"] == 2 and info["label_base"] == 0
    assert info["modalities"] == ["rgb"] and info["fps"] is None and info["short_side"] is None
    train = info["splits"]["train"]
    assert (train["num_videos"], train["num_rejected"]) == (4, 5)
    # 9 listed videos in shards of 3: every shard with a converted video exists.
    assert sum(train["shards"].values()) == 4
    assert sorted(os.listdir(output / "train")) == sorted(train["shards"])
    assert info["splits"]["test"] == {"num_videos": 2, "num_rejected": 0, "shards": {"test-00000.tfrecord": 2}}


@pytest.mark.parametrize("method_name", sorted(methods.METHODS))
def test_every_method_trains_one_step_on_prepared_shards(method_name, ucf101_dataset, tmp_path):
    if method_name not in TINY_FLAGS:
        pytest.fail(f"tests/conftest.py TINY_FLAGS has no entry for the method {method_name!r}")
    output, _ = ucf101_dataset
    with flagsaver.flagsaver():
        flags.FLAGS([
            "pretrain", f"--method={method_name}", f"--data={output}", f"--workdir={tmp_path}",
            *TINY_FLAGS[method_name], "--train_steps=1", "--val_split=none",
        ])
        method, config = pretrain.effective_config()
        assert method.min_frames() <= NUM_FRAMES, f"{method_name}'s tiny flags need longer test videos"
        logs = trainer.train(method, config, config.workdir)
    assert np.isfinite(logs["loss"])


# ---- resuming -------------------------------------------------------------------------------------


@pytest.fixture
def folder_manifest(tmp_path):
    """Four H.264 .mp4 videos in one folder per class."""
    root = tmp_path / "videos"
    for index in range(4):
        path = root / f"class{index % 2}" / f"video{index}.mp4"
        save_video(path, render(index % 2, index, num_frames=6), fps=10)
    return manifests.folder_per_class(str(root))


def test_an_interrupted_run_resumes_keeping_finished_shards(folder_manifest, tmp_path, monkeypatch):
    output = str(tmp_path / "out")
    options = shards.Options(shard_size=1)
    convert = shards.convert_video
    converted, interrupt_at = [], [2]

    def convert_until_interrupted(entry, *args):
        if len(converted) == interrupt_at[0]:
            raise KeyboardInterrupt  # Ctrl-C while the third shard is being written.
        converted.append(entry.name)
        return convert(entry, *args)

    monkeypatch.setattr(shards, "convert_video", convert_until_interrupted)
    with pytest.raises(KeyboardInterrupt):
        shards.prepare(folder_manifest, output, options)
    # The shard being written is discarded; the finished ones stay.
    finished = sorted(os.listdir(os.path.join(output, "train")))
    assert finished == ["train-00000.tfrecord", "train-00001.tfrecord"]
    assert records.list_shards(output) == [os.path.join(output, "train", name) for name in finished]
    stamps = {name: os.stat(os.path.join(output, "train", name)).st_mtime_ns for name in finished}

    converted.clear()
    interrupt_at[0] = None
    summary = shards.prepare(folder_manifest, output, options)

    assert len(converted) == 2  # Only the two unfinished shards were redone.
    assert {name: os.stat(os.path.join(output, "train", name)).st_mtime_ns for name in finished} == stamps
    assert summary["num_converted"] == 4 and len(records.list_shards(output)) == 4
    assert not [name for name in os.listdir(os.path.join(output, "train")) if name.endswith(".partial")]


def test_other_options_in_the_same_directory_need_overwrite(folder_manifest, tmp_path):
    output = str(tmp_path / "out")
    shards.prepare(folder_manifest, output, shards.Options(shard_size=2))
    with pytest.raises(ValueError, match="--overwrite"):
        shards.prepare(folder_manifest, output, shards.Options(shard_size=2, short_side=20))

    resized = shards.Options(shard_size=2, short_side=20)
    summary = shards.prepare(folder_manifest, output, resized, overwrite=True)

    assert summary["num_converted"] == 4
    video = next(iter(read_records(output, "train").values()))
    assert tf.io.decode_jpeg(video["rgb"][0]).shape[:2] == (20, 24)


def test_bad_options_name_their_flag():
    with pytest.raises(ValueError, match="--fps=25 and --frame_stride=2: give one of the two"):
        shards.Options(fps=25, frame_stride=2)
    with pytest.raises(ValueError, match="--modality=rgb,depth"):
        shards.Options(modality=("rgb", "depth"))
    with pytest.raises(ValueError, match="--jpeg_quality=0"):
        shards.Options(jpeg_quality=0)


# ---- modalities -----------------------------------------------------------------------------------


def test_flow_and_diff_shards_decode_back_to_the_motion(tmp_path):
    # A smooth texture moving 1 pixel right and 0.5 down per frame, stored near-losslessly.
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    frames = np.stack([
        np.repeat((127 + 60 * np.sin((cols - t) / 3.1) * np.cos((rows - 0.5 * t) / 4.3))[..., None], 3, -1)
        for t in range(5)
    ]).round().astype(np.uint8)
    save_video(tmp_path / "videos" / "moving" / "pan.mkv", frames, fps=5, codec="ffv1")
    output = tmp_path / "out"

    summary = run_prepare(
        "--dataset=folder", f"--video_root={tmp_path / 'videos'}", f"--output_dir={output}",
        "--modality=rgb,flow,diff", f"--flow_bound={modalities.TCP_FLOW_BOUND}", "--jpeg_quality=100",
    )

    assert summary["num_converted"] == 1
    video = read_records(output, "train", ("rgb", "flow", "diff"))["moving/pan.mkv"]
    assert int(video["num_frames"]) == 4  # 5 frames give 4 motions; rgb keeps frames 0-3.
    assert [len(video[m]) for m in ("rgb", "flow", "diff")] == [4, 4, 4]
    flow = pipeline.decode_frames(video["flow"], tf.range(4), "flow").numpy()
    assert flow.shape == (4, HEIGHT, WIDTH, 2)
    motion = modalities.dequantize_flow(flow, modalities.TCP_FLOW_BOUND)[:, 4:-4, 4:-4]
    np.testing.assert_allclose(motion.mean(axis=(1, 2)), [[1.0, 0.5]] * 4, atol=0.15)
    diff = pipeline.decode_frames(video["diff"], tf.range(4), "diff").numpy()
    expected = np.stack([modalities.image_difference(a, b) for a, b in zip(frames, frames[1:])])
    assert diff.shape == (4, HEIGHT, WIDTH, 1) and np.abs(diff - expected.astype(float)).mean() < 1
    rgb = pipeline.decode_frames(video["rgb"], tf.range(4), "rgb").numpy()
    assert np.abs(rgb - frames[:4].astype(float)).mean() < 3  # Frames 0-3 (1-4 would be ~20 off).
    info = records.read_dataset_info(str(output))
    assert info["flow"] == {"algorithm": "tvl1", "backend": modalities.FlowEstimator().backend, "bound": 10.0}


# ---- other datasets -------------------------------------------------------------------------------


def level_video(num_frames, fps):
    """Frames whose grey level is 8 * index, so a stored frame tells which source frame it is."""
    frames = np.repeat((8 * np.arange(num_frames, dtype=np.uint8))[:, None, None, None], 3, axis=3)
    return np.broadcast_to(frames, (num_frames, 16, 16, 3)).copy(), fps


def levels(video):
    frames = pipeline.decode_frames(video["rgb"], tf.range(video["num_frames"])).numpy()
    return np.round(frames.mean(axis=(1, 2, 3)) / 8).astype(int).tolist()


def test_kinetics_full_videos_are_trimmed_and_trimmed_ones_kept(tmp_path):
    frames, fps = level_video(30, 10)  # 3 s.
    save_video(tmp_path / "k400" / "archery" / "full1.mp4", frames, fps)
    save_video(tmp_path / "k400" / "archery" / "cut_000005_000015.mp4", frames[:12], fps)
    write(tmp_path / "train.csv",
          "label,youtube_id,time_start,time_end,split\narchery,full1,1,2,train\narchery,cut,5,15,train\n")

    run_prepare("--dataset=kinetics", f"--video_root={tmp_path / 'k400'}",
                f"--annotations={tmp_path / 'train.csv'}", f"--output_dir={tmp_path / 'out'}")

    train = read_records(tmp_path / "out", "train")
    assert levels(train["full1_000001_000002"]) == list(range(10, 20))  # Second 1 to 2.
    assert levels(train["cut_000005_000015"]) == list(range(12))


def test_kinetics_trim_after_resampling_to_a_target_fps(tmp_path):
    frames, fps = level_video(30, 10)
    save_video(tmp_path / "k400" / "full1.mp4", frames, fps)
    write(tmp_path / "val.csv", "label,youtube_id,time_start,time_end\narchery,full1,2,3\n")

    run_prepare("--dataset=kinetics", f"--video_root={tmp_path / 'k400'}", "--fps=5",
                f"--annotations={tmp_path / 'val.csv'}", f"--output_dir={tmp_path / 'out'}")

    video = read_records(tmp_path / "out", "val")["full1_000002_000003"]
    assert levels(video) == [20, 22, 24, 26, 28] and float(video["fps"]) == 5.0


def test_oops_records_carry_the_failure_times(tmp_path):
    frames, fps = level_video(10, 10)
    save_video(tmp_path / "oops_video" / "train" / "fall.mp4", frames, fps)
    save_video(tmp_path / "oops_video" / "val" / "trip.mp4", frames, fps)
    write(tmp_path / "transition_times.json", json.dumps({
        "fall": {"t": [0.5, 0.7, -1], "rel_t": [0.5, 0.7, -1], "len": 1.0},
        "trip": {"t": [-1, -1, -1], "rel_t": [-1, -1, -1], "len": 1.0},
    }))

    run_prepare("--dataset=oops", f"--video_root={tmp_path / 'oops_video'}",
                f"--annotations={tmp_path / 'transition_times.json'}", f"--output_dir={tmp_path / 'out'}")

    fall = read_records(tmp_path / "out", "train")["train/fall.mp4"]
    np.testing.assert_allclose([fall["t_fail"], fall["rel_t"]], [0.6, 0.6], rtol=1e-6)
    assert int(fall["label"]) == -1
    trip = read_records(tmp_path / "out", "val")["val/trip.mp4"]
    assert float(trip["t_fail"]) == -1.0  # No valid annotation: absent.


def write_frame_folder(folder, pattern, frames, quality=90):
    os.makedirs(folder, exist_ok=True)
    for index, frame in enumerate(frames, 1):
        write(os.path.join(folder, pattern % index), records.encode_jpeg(frame, quality))


def test_frame_folders_store_jpegs_as_they_are_or_resized(tmp_path):
    frames = render(1, 0, num_frames=5)
    write_frame_folder(tmp_path / "frames" / "run" / "dpc_video", "image_%05d.jpg", frames)
    write_frame_folder(tmp_path / "frames" / "run" / "pace_video", "frame%06d.jpg", frames[:3])
    write_frame_folder(tmp_path / "frames" / "sit" / "odd_sizes", "image_%05d.jpg", [frames[0], frames[1, :30]])
    write(tmp_path / "frames" / "sit" / "corrupt" / "image_00001.jpg", b"\xff\xd8 not a jpeg")
    os.makedirs(tmp_path / "frames" / "sit" / "empty")

    summary = run_prepare("--dataset=frames", f"--video_root={tmp_path / 'frames'}",
                          f"--output_dir={tmp_path / 'same'}", "--frames_fps=30")
    run_prepare("--dataset=frames", f"--video_root={tmp_path / 'frames'}",
                          f"--output_dir={tmp_path / 'resized'}", "--short_side=20", "--frame_stride=2")

    assert reasons(summary) == {
        "run/dpc_video": "converted", "run/pace_video": "converted", "sit/corrupt": "decode error",
        "sit/empty": "no frames", "sit/odd_sizes": "inconsistent frame sizes",
    }
    same = read_records(tmp_path / "same", "train")
    with open(tmp_path / "frames" / "run" / "dpc_video" / "image_00002.jpg", "rb") as f:
        assert same["run/dpc_video"]["rgb"][1].numpy() == f.read()  # Not re-encoded.
    assert int(same["run/pace_video"]["num_frames"]) == 3 and float(same["run/pace_video"]["fps"]) == 30.0
    video = read_records(tmp_path / "resized", "train")["run/dpc_video"]
    assert int(video["num_frames"]) == 3 and float(video["fps"]) == 12.5  # Frames 1, 3, 5 at 25 / 2.
    assert tf.io.decode_jpeg(video["rgb"][0]).shape == (20, 24, 3)


def test_official_lists_index_frame_folders_in_place_of_videos(tmp_path):
    write_frame_folder(tmp_path / "frames" / "Archery" / "v_Archery_g01_c01", "image_%05d.jpg", render(0, 0, 4))
    write(tmp_path / "lists" / "classInd.txt", "1 Archery\r\n")
    write(tmp_path / "lists" / "trainlist01.txt", "Archery/v_Archery_g01_c01.avi 1\r\n")
    write(tmp_path / "lists" / "testlist01.txt", "")

    summary = run_prepare("--dataset=ucf101", f"--video_root={tmp_path / 'frames'}",
                          f"--split_dir={tmp_path / 'lists'}", f"--output_dir={tmp_path / 'out'}")

    assert reasons(summary) == {"Archery/v_Archery_g01_c01.avi": "converted"}
    assert int(read_records(tmp_path / "out", "train")["Archery/v_Archery_g01_c01.avi"]["num_frames"]) == 4


def test_csv_list_of_mp4_and_avi_videos(tmp_path):
    save_video(tmp_path / "clips" / "a.mp4", render(0, 1, 6), fps=25)
    save_video(tmp_path / "clips" / "b.avi", render(1, 2, 6), fps=25)
    write(tmp_path / "list.csv", "path,label\nclips/a.mp4,walk\nclips/b.avi,run\n")

    run_prepare("--dataset=csv", f"--annotations={tmp_path / 'list.csv'}", f"--output_dir={tmp_path / 'out'}")

    train = read_records(tmp_path / "out", "train")
    assert {name: int(v["label"]) for name, v in train.items()} == {"clips/a.mp4": 1, "clips/b.avi": 0}
    assert records.read_dataset_info(str(tmp_path / "out"))["class_names"] == ["run", "walk"]


def test_missing_required_flag_is_named():
    with pytest.raises(ValueError, match="--split_dir: required with --dataset=hmdb51"):
        run_prepare("--dataset=hmdb51", "--video_root=/v", "--output_dir=/tmp/never")


def test_command_line_hmdb51_with_spawned_workers(tmp_path):
    for split_type, name in [(1, "a"), (2, "b"), (1, "c"), (0, "unused")]:
        if split_type:
            save_video(tmp_path / "hmdb51" / "jump" / f"{name}.avi", render(0, ord(name), 6), fps=25)
    write(tmp_path / "splits" / "jump_test_split1.txt", "a.avi 1 \nb.avi 2 \nc.avi 1 \nunused.avi 0 \n")

    result = subprocess.run(
        [sys.executable, "-m", "tfvssl.prepare", "--dataset=hmdb51", f"--video_root={tmp_path / 'hmdb51'}",
         f"--split_dir={tmp_path / 'splits'}", f"--output_dir={tmp_path / 'out'}", "--workers=2",
         "--shard_size=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "prepare: 3/3 videos" in result.stderr and "videos/s" in result.stderr
    assert "3 of 3 videos converted" in result.stdout
    assert sorted(read_records(tmp_path / "out", "train")) == ["jump/a.avi", "jump/c.avi"]
    assert sorted(os.listdir(tmp_path / "out" / "train")) == ["train-00000.tfrecord", "train-00001.tfrecord"]


# ---- Faults: checking a dataset root, one conversion at a time, bad paths -----------------------------


def run_verify(root):
    flag_values = flags.FlagValues()
    prepare.define_flags(flag_values)
    flag_values(["prepare", "--verify", f"--output_dir={root}"])
    return prepare.verify(flag_values)


def test_verify_names_unreadable_shards_and_mismatched_counts(ucf101_dataset, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(ucf101_dataset[0], root)
    assert run_verify(root) == []
    assert capsys.readouterr().out.endswith(": 6 records read (test 2, train 4); no problem(s)\n")

    shard = max(records.list_shards(str(root), "train"), key=os.path.getsize)
    ends = [len(r.numpy()) + records.RECORD_FRAMING for r in tf.data.TFRecordDataset(shard)]
    with open(shard, "r+b") as f:
        f.truncate(ends[0] + 100)  # The second record cut short.
    with open(root / shards.SUMMARY) as f:
        summary = json.load(f)
    video = next(v for v in summary["videos"] if v["split"] == "test" and v["status"] == "converted")
    video["frames"] += 1
    with open(root / shards.SUMMARY, "w") as f:
        json.dump(summary, f)

    test_problem, *train_problems = run_verify(root)
    assert test_problem.startswith(f"{root / 'test'}") and f"{video['video']}: frames stored" in test_problem
    assert f"summary.json {video['frames']}" in test_problem
    assert train_problems[0].startswith(f"{shard}: unreadable from byte {ends[0]} on (record 1): truncated record")
    assert train_problems[1:] == [f"{shard}: 1 records readable, dataset_info.json lists {len(ends)}"]


def test_a_second_conversion_into_the_same_directory_refuses_to_start(folder_manifest, tmp_path):
    output = str(tmp_path / "out")
    with shards.hold_output(output):
        with pytest.raises(ValueError, match=rf"another conversion \(PID {os.getpid()}\) is writing it"):
            shards.prepare(folder_manifest, output, shards.Options())

    # The file a dead conversion left is taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write(os.path.join(output, shards.LOCK_FILE), f"{dead.pid}\n")
    assert shards.prepare(folder_manifest, output, shards.Options())["num_converted"] == 4
    with open(os.path.join(output, shards.LOCK_FILE)) as f:
        assert f.read() == f"{os.getpid()}\n"


def process_state(pid):
    """`(state, parent pid)` of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state, parent = f.read().rsplit(")", 1)[1].split()[:2]
    except OSError:
        return None
    return state, int(parent)


def alive(pids):
    """Those of `pids` still running."""
    return [pid for pid in pids if (process_state(pid) or ("Z",))[0] != "Z"]


def children(pid):
    """The processes whose parent is `pid`."""
    return [child for child in filter(str.isdigit, os.listdir("/proc")) if (process_state(child) or ("", 0))[1] == pid]


def partial_shards(output):
    """The shards of `output` being written."""
    split_dir = output / "train"
    return [name for name in os.listdir(split_dir) if name.endswith(".partial")] if split_dir.is_dir() else []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_conversion(tmp_path):
    for index in range(6):  # Flow makes each video take seconds: the workers are busy when killed.
        save_video(tmp_path / "videos" / f"class{index % 2}" / f"video{index}.mp4", render(index % 2, index, 16), 10)
    output = tmp_path / "out"
    parent = subprocess.Popen(
        [sys.executable, "-m", "tfvssl.prepare", "--dataset=folder", f"--video_root={tmp_path / 'videos'}",
         f"--output_dir={output}", "--modality=rgb,flow", "--shard_size=3", "--workers=2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    workers = []
    try:
        deadline = time.time() + 180
        while len(partial_shards(output)) < 2:
            assert time.time() < deadline and parent.poll() is None, "the workers never started a shard"
            time.sleep(0.2)
        workers = children(parent.pid)
        parent.kill()
        parent.wait()
        deadline = time.time() + 5
        while alive(workers) and time.time() < deadline:
            time.sleep(0.1)
        assert workers and not alive(workers), "workers outlived the conversion"
        with shards.hold_output(str(output)):  # Its lock died with it too.
            pass
    finally:
        parent.kill()
        for pid in alive(workers):
            os.kill(int(pid), signal.SIGKILL)


def test_missing_input_paths_are_named_before_any_work(tmp_path):
    # `main` prints such a ValueError as one `error: ...` line.
    output = f"--output_dir={tmp_path / 'out'}"
    with pytest.raises(ValueError, match=rf"^--video_root={tmp_path / 'nowhere'}: no such directory$"):
        run_prepare("--dataset=folder", f"--video_root={tmp_path / 'nowhere'}", output)
    with pytest.raises(ValueError, match=r"^--split_dir=.*: no such directory$"):
        run_prepare("--dataset=ucf101", f"--video_root={tmp_path}", f"--split_dir={tmp_path / 'lists'}", output)
    with pytest.raises(ValueError, match=r"^--annotations=.*list.csv: no such file$"):
        run_prepare("--dataset=csv", f"--annotations={tmp_path / 'list.csv'}", output)
    assert not os.path.exists(tmp_path / "out")
