"""Tests of the split-file readers on small files written in each dataset's official format."""

import json
import logging
import os

import pytest

from tfvssl.data import manifests


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)


def summary(manifest):
    return [(e.name, e.split, e.label_index, e.label) for e in manifest.entries]


# ---- UCF101 -------------------------------------------------------------------------------------


@pytest.fixture
def ucf_lists(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    # The official files have CRLF line endings.
    write(lists / "classInd.txt", "1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")
    write(lists / "trainlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nArchery/v_Archery_g08_c02.avi 3\r\n")
    write(lists / "testlist01.txt",
          "ApplyLipstick/v_ApplyLipstick_g01_c01.avi\r\nArchery/v_Archery_g01_c01.avi\r\n")
    write(lists / "trainlist02.txt", "ApplyLipstick/v_ApplyLipstick_g09_c01.avi 2\r\n")
    write(lists / "testlist02.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi\r\n")
    return lists


def test_ucf101_labels_are_0_based_and_paths_join_the_root(ucf_lists):
    manifest = manifests.ucf101("/data/UCF-101", str(ucf_lists), split_number=1)

    assert manifest.class_names == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    assert summary(manifest) == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "train", 0, "ApplyEyeMakeup"),
        ("Archery/v_Archery_g08_c02.avi", "train", 2, "Archery"),
        ("ApplyLipstick/v_ApplyLipstick_g01_c01.avi", "test", 1, "ApplyLipstick"),
        ("Archery/v_Archery_g01_c01.avi", "test", 2, "Archery"),
    ]
    assert manifest.entries[0].path == "/data/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    assert manifest.splits() == ["train", "test"]


def test_ucf101_split_number_picks_the_lists(ucf_lists):
    manifest = manifests.ucf101("/v", str(ucf_lists), split_number=2)
    assert [e.name for e in manifest.entries] == [
        "ApplyLipstick/v_ApplyLipstick_g09_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi"
    ]


def test_ucf101_label_contradicting_its_class_folder_is_an_error(ucf_lists):
    write(ucf_lists / "trainlist01.txt", "Archery/v_Archery_g08_c02.avi 1\r\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:1: label 1 but classInd.txt gives Archery = 3"):
        manifests.ucf101("/v", str(ucf_lists))


def test_ucf101_unknown_class_and_bad_class_index_are_errors(ucf_lists):
    write(ucf_lists / "testlist01.txt", "Bowling/v_Bowling_g01_c01.avi\r\n")
    with pytest.raises(ValueError, match="class 'Bowling' is not in classInd.txt"):
        manifests.ucf101("/v", str(ucf_lists))
    write(ucf_lists / "classInd.txt", "1 A\r\n3 B\r\n")
    with pytest.raises(ValueError, match=r"class indices must be 1..2"):
        manifests.ucf101("/v", str(ucf_lists))
    with pytest.raises(ValueError, match="split_number must be 1, 2 or 3"):
        manifests.ucf101("/v", str(ucf_lists), split_number=4)


# ---- HMDB51 -------------------------------------------------------------------------------------


def test_hmdb51_types_1_and_2_are_train_and_test_0_is_left_out(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    # Official lines end with a space before the newline.
    write(splits / "brush_hair_test_split1.txt",
          "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nAprilleBrushHair_brush_hair_f_nm_np1_le_goo_0.avi 2 \n"
          "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n")
    write(splits / "cartwheel_test_split1.txt", "Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 2 \n")
    write(splits / "cartwheel_test_split2.txt", "Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 1 \n")
    write(splits / "brush_hair_test_split2.txt", "")

    manifest = manifests.hmdb51("/hmdb", str(splits), split_number=1)

    assert manifest.class_names == ["brush_hair", "cartwheel"]
    assert summary(manifest) == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "train", 0, "brush_hair"),
        ("brush_hair/AprilleBrushHair_brush_hair_f_nm_np1_le_goo_0.avi", "test", 0, "brush_hair"),
        ("cartwheel/Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi", "test", 1, "cartwheel"),
    ]
    assert manifest.entries[0].path == "/hmdb/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi"
    assert [e.split for e in manifests.hmdb51("/hmdb", str(splits), 2).entries] == ["train"]


def test_hmdb51_bad_type_and_missing_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no \*_test_split1.txt files"):
        manifests.hmdb51("/hmdb", str(tmp_path))
    write(tmp_path / "jump_test_split1.txt", "a.avi 3\n")
    with pytest.raises(ValueError, match=r"jump_test_split1.txt:1: expected '<video> <0\|1\|2>'"):
        manifests.hmdb51("/hmdb", str(tmp_path))


# ---- Kinetics -----------------------------------------------------------------------------------


def test_kinetics_finds_trimmed_and_full_videos_and_sorts_classes(tmp_path):
    videos = tmp_path / "videos"
    write(videos / "train" / "riding a bike" / "abc_000010_000020.mp4", "")
    write(videos / "full" / "xyz.mkv", "")
    write(tmp_path / "train.csv",
          "label,youtube_id,time_start,time_end,split,is_cc\n"
          "riding a bike,abc,10,20,train,0\n"
          "archery,xyz,3,13,train,0\n"
          "archery,missing,0,10,train,0\n")
    write(tmp_path / "test.csv", "youtube_id,time_start,time_end\nxyz,20,30\n")

    manifest = manifests.kinetics(str(videos), [str(tmp_path / "train.csv"), str(tmp_path / "test.csv")])

    assert manifest.class_names == ["archery", "riding a bike"]
    trimmed, full, missing, unlabeled = manifest.entries
    assert (trimmed.name, trimmed.label_index, trimmed.start, trimmed.end) == ("abc_000010_000020", 1, None, None)
    assert trimmed.path == str(videos / "train" / "riding a bike" / "abc_000010_000020.mp4")
    assert (full.path, full.start, full.end, full.label_index) == (str(videos / "full" / "xyz.mkv"), 3.0, 13.0, 0)
    assert full.name == "xyz_000003_000013"
    assert not os.path.exists(missing.path) and missing.name == "missing_000000_000010"
    assert (unlabeled.split, unlabeled.label_index, unlabeled.start) == ("test", -1, 20.0)


def test_kinetics_csv_without_required_columns_is_an_error(tmp_path):
    write(tmp_path / "train.csv", "label,youtube_id\na,b\n")
    with pytest.raises(ValueError, match=r"missing columns \['time_end', 'time_start'\]"):
        manifests.kinetics(str(tmp_path), [str(tmp_path / "train.csv")])


# ---- Oops ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "times, rule, expected",
    [
        ([2.0, -1.0, 4.0, 3.0], "valid", 3.0),  # Median of 2, 3, 4.
        ([2.0, -1.0, 4.0, 5.0], "valid", 4.0),
        ([1.0, 2.0, -1.0, -1.0], "valid", 1.5),
        ([-1.0, -1.0], "valid", None),
        ([2.0, -1.0, 4.0, 5.0], "upper", 4.0),  # Sorted [-1, 2, 4, 5], element 2.
        ([1.0, 2.0, -1.0, -1.0], "upper", 1.0),  # Sorted [-1, -1, 1, 2], element 2.
        ([3.0, -1.0, -1.0], "upper", None),  # Element 1 is absent.
        ([], "upper", None),
    ],
)
def test_oops_failure_time_rules(times, rule, expected):
    assert manifests.oops_failure_time(times, rule) == expected


def test_oops_reads_annotations_splits_and_filtered_lists(tmp_path):
    root = tmp_path / "oops_video"
    for split, name in [("train", "a fail"), ("train", "b"), ("val", "c"), ("val", "d")]:
        write(root / split / f"{name}.mp4", "")
    write(tmp_path / "transition_times.json", json.dumps({
        "a fail": {"t": [1.0, 2.0, -1.0], "rel_t": [0.1, 0.2, -1.0], "len": 10.0},
        "c": {"t": [4.0, 5.0, 6.0], "rel_t": [0.4, 0.5, 0.6], "len": 10.0},
    }))
    write(tmp_path / "lists" / "val_filtered.txt", "c.mp4\n")

    manifest = manifests.oops(str(root), str(tmp_path / "transition_times.json"), str(tmp_path / "lists"))

    assert manifest.class_names == []
    assert [(e.name, e.split, e.label_index, e.t_fail, e.rel_t) for e in manifest.entries] == [
        ("train/a fail.mp4", "train", -1, 1.5, pytest.approx(0.15)),
        ("train/b.mp4", "train", -1, None, None),
        ("val/c.mp4", "val", -1, 5.0, 0.5),
    ]
    assert manifest.entries[0].path == str(root / "train" / "a fail.mp4")
    upper = manifests.oops(str(root), str(tmp_path / "transition_times.json"), median="upper")
    assert [e.t_fail for e in upper.entries] == [1.0, None, 5.0, None]  # Sorted [-1, 1, 2]: element 1.


# ---- folders and CSV ----------------------------------------------------------------------------


def test_folder_per_class_lists_videos_of_sorted_classes(tmp_path):
    for path in ["walk/b.mp4", "walk/a.avi", "walk/notes.txt", "jump/c.MKV"]:
        write(tmp_path / path, "")

    manifest = manifests.folder_per_class(str(tmp_path), split="val")

    assert manifest.class_names == ["jump", "walk"]
    assert summary(manifest) == [
        ("jump/c.MKV", "val", 0, "jump"), ("walk/a.avi", "val", 1, "walk"), ("walk/b.mp4", "val", 1, "walk")
    ]


def test_empty_class_folders_stay_classes_with_one_warning(tmp_path, caplog):
    write(tmp_path / "walk" / "a.mp4", "")
    for empty in ("jump", "sit"):
        os.makedirs(tmp_path / empty)

    with caplog.at_level(logging.WARNING):
        manifest = manifests.folder_per_class(str(tmp_path))

    assert manifest.class_names == ["jump", "sit", "walk"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: 2 class folder(s) hold no videos and stay classes with 0 videos: jump, sit"
    ]


def test_frame_folders_and_frame_file_order(tmp_path):
    for name in ["image_00010.jpg", "image_00002.jpg", "flow_00001.jpg", "image_00001.jpg"]:
        write(tmp_path / "run" / "v1" / name, "")
    for name in ["frame000002.jpg", "frame000001.jpg"]:
        write(tmp_path / "sit" / "v2" / name, "")

    manifest = manifests.frame_folders(str(tmp_path))

    assert summary(manifest) == [("run/v1", "train", 0, "run"), ("sit/v2", "train", 1, "sit")]
    files = manifests.frame_files(manifest.entries[0].path)
    assert [os.path.basename(f) for f in files] == ["image_00001.jpg", "image_00002.jpg", "image_00010.jpg"]
    assert [os.path.basename(f) for f in manifests.frame_files(manifest.entries[1].path)] == [
        "frame000001.jpg", "frame000002.jpg"
    ]


def test_csv_list_header_splits_numeric_labels_and_unlabeled_rows(tmp_path):
    write(tmp_path / "list.csv", "path,label,split\nclips/a.mp4,10\nclips/b.mp4,2,test\n/abs/c.mp4,\n")

    manifest = manifests.csv_list(str(tmp_path / "list.csv"))

    assert manifest.class_names == ["2", "10"]  # Numbers sort as numbers.
    assert summary(manifest) == [
        ("clips/a.mp4", "train", 1, "10"), ("clips/b.mp4", "test", 0, "2"), ("/abs/c.mp4", "train", -1, "")
    ]
    assert manifest.entries[0].path == str(tmp_path / "clips" / "a.mp4")
    assert manifest.entries[2].path == "/abs/c.mp4"
