"""Manifest parsing: CSV/TSV, Sports-1M partition files, UCF-101 split files."""
from __future__ import annotations

import os

import pytest

from tfrecord_tools import manifest as m


def _write(path, text: str) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _touch(path) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    open(path, "wb").close()
    return str(path)


def test_csv_infers_sorted_classes_and_takes_header_comments_tabs_and_multilabel(tmp_path):
    path = _write(tmp_path / "list.csv", "path,label\n# a comment\n\nv/a.mp4,walk\n"
                                         "v/b.avi\trun;walk\nv/c.mp4 , swim \n")
    man = m.read_manifest(path, "csv")
    assert man.classes == ["run", "swim", "walk"]
    assert man.problems == []
    a, b, c = man.entries
    assert (a.video_id, a.label_indices, a.label_strings) == ("a", (2,), ("walk",))
    assert a.path == os.path.join(str(tmp_path), "v/a.mp4")  # relative to the manifest's folder
    assert (b.label_indices, b.label_strings) == ((0, 2), ("run", "walk"))
    assert c.video_id == "c" and c.label_strings == ("swim",)
    assert a.source == f"{path}:4" and c.source == f"{path}:6"


def test_csv_reports_malformed_unknown_and_duplicate_lines_with_file_and_line(tmp_path):
    labels = _write(tmp_path / "classes.txt", "walk\nrun\n")
    path = _write(tmp_path / "list.csv", "v/a.mp4,walk\njust-a-path\nv/b.mp4,fly\n,run\n"
                                         "v/a.mp4,run\n")
    man = m.read_manifest(path, "csv", labels=labels, video_root="/videos")
    assert man.classes == ["walk", "run"]
    assert [e.path for e in man.entries] == ["/videos/v/a.mp4"]
    reasons = {p.source: p.reason for p in man.problems}
    assert set(reasons) == {f"{path}:{n}" for n in (2, 3, 4, 5)}
    assert "malformed line 'just-a-path'" in reasons[f"{path}:2"]
    assert "label 'fly' not in the class list" in reasons[f"{path}:3"]
    assert "malformed" in reasons[f"{path}:4"]
    assert f"duplicate video id 'a' (first at {path}:1)" in reasons[f"{path}:5"]


def test_csv_files_sharing_a_stem_get_path_ids(tmp_path):
    path = _write(tmp_path / "list.csv", "walk/001.mp4,walk\nrun/001.mp4,run\nrun/002.mp4,run\n"
                                         "run/002.avi,run\n")
    ids = [e.video_id for e in m.read_manifest(path, "csv").entries]
    assert ids == ["walk/001.mp4", "run/001.mp4", "run/002.mp4", "run/002.avi"]


def test_sports1m_partition_lines_find_videos_by_youtube_id(tmp_path):
    root = tmp_path / "videos"
    _touch(root / "UDqivjS-lpI.mp4")
    _touch(root / "sub" / "abc_DEF-123.webm")
    labels = _write(tmp_path / "labels.txt", "boomerang\ncycling\nskiing\n")
    path = _write(tmp_path / "train_partition.txt",
                  "https://www.youtube.com/watch?v=UDqivjS-lpI 1,2\n"
                  "https://www.youtube.com/watch?v=abc_DEF-123 0\n"
                  "https://www.youtube.com/watch?v=notOnDisk00 2\n"
                  "https://www.youtube.com/watch?v=badlabel000 7\n"
                  "https://www.youtube.com/watch?v=nolabels000\n"
                  "https://www.youtube.com/watch?v=textlabel00 a,b\n")
    man = m.read_manifest(path, "sports1m", video_root=str(root), labels=labels)
    assert man.classes == ["boomerang", "cycling", "skiing"]
    by_id = {e.video_id: e for e in man.entries}
    assert by_id["UDqivjS-lpI"].label_strings == ("cycling", "skiing")
    assert by_id["UDqivjS-lpI"].path == str(root / "UDqivjS-lpI.mp4")
    assert by_id["abc_DEF-123"].path == str(root / "sub" / "abc_DEF-123.webm")
    # A video not on disk stays in the list: the converter reports it as missing.
    assert by_id["notOnDisk00"].path == str(root / "notOnDisk00")
    reasons = {p.source.rsplit(":", 1)[1]: p.reason for p in man.problems}
    assert set(reasons) == {"4", "5", "6"}
    assert "label 7 not in the class list" in reasons["4"]
    assert "malformed" in reasons["5"] and "malformed" in reasons["6"]


def test_sports1m_without_labels_file_numbers_487_classes(tmp_path):
    path = _write(tmp_path / "p.txt", "https://www.youtube.com/watch?v=a1 486\n")
    man = m.read_manifest(path, "sports1m", video_root=str(tmp_path))
    assert len(man.classes) == 487 and man.entries[0].label_strings == ("486",)


def _ucf_tree(tmp_path):
    root = tmp_path / "UCF-101"
    _touch(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    # The real dataset's folder/file spelling mismatch.
    _touch(root / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi")
    _touch(root / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi")
    _touch(root / "YoYo" / "v_YoYo_g01_c02.avi")
    lists = tmp_path / "ucfTrainTestlist"
    _write(lists / "classInd.txt", "1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    return root, lists


def test_ucf101_trainlist_is_one_based_and_testlist_takes_class_from_folder(tmp_path):
    root, lists = _ucf_tree(tmp_path)
    train = _write(lists / "trainlist01.txt",
                   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
                   "HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n"
                   "YoYo/v_YoYo_g09_c01.avi 9\n"
                   "YoYo/v_YoYo_g09_c01.avi x\n"
                   "not a line at all\n")
    man = m.read_manifest(train, "ucf101", video_root=str(root))
    assert man.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert [(e.video_id, e.label_indices) for e in man.entries] == [
        ("v_ApplyEyeMakeup_g08_c01", (0,)), ("v_HandStandPushups_g08_c01", (1,))]
    assert all(os.path.exists(e.path) for e in man.entries)
    reasons = [p.reason for p in man.problems]
    assert "label 9 not in the class list" in reasons[0]
    assert "not an integer" in reasons[1] and "malformed" in reasons[2]
    assert [p.source for p in man.problems] == [f"{train}:{n}" for n in (3, 4, 5)]
    assert m.guess_split(train) == "train"

    # testlist: no label column; the folder names the class, whatever its case.
    test = _write(lists / "testlist01.txt", "HandStandPushups/v_HandStandPushups_g01_c01.avi\n"
                                            "YoYo/v_YoYo_g01_c02.avi\nSkating/v_Skating_g01_c01.avi\n")
    man = m.read_manifest(test, "ucf101", video_root=str(root))
    assert [(e.video_id, e.label_strings) for e in man.entries] == [
        ("v_HandStandPushups_g01_c01", ("HandstandPushups",)), ("v_YoYo_g01_c02", ("YoYo",))]
    # Found by name although the listed folder's case differs from the disk's.
    assert os.path.exists(man.entries[0].path)
    assert "label 'Skating' not in the class list" in man.problems[0].reason
    assert m.guess_split(test) == "test"


def test_ucf101_without_class_file_is_a_clear_error(tmp_path):
    path = _write(tmp_path / "trainlist01.txt", "A/v_A_g01_c01.avi 1\n")
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        m.read_manifest(path, "ucf101")


def test_class_files_numbered_or_plain(tmp_path):
    assert m.read_class_names(_write(tmp_path / "a.txt", "0 a b\n1 c\n")) == ["a b", "c"]
    assert m.read_class_names(_write(tmp_path / "b.txt", "model aircraft\nboomerang\n")) == [
        "model aircraft", "boomerang"]
    gap = _write(tmp_path / "c.txt", "1 a\n2 b\n4 c\n")
    with pytest.raises(ValueError, match=r"c.txt:3: class number 4, expected 3"):
        m.read_class_names(gap)
    dup = _write(tmp_path / "d.txt", "a\nb\na\n")
    with pytest.raises(ValueError, match=r"d.txt:3: class 'a' repeats line 1"):
        m.read_class_names(dup)


def test_unknown_format_and_missing_manifest(tmp_path):
    with pytest.raises(ValueError, match="manifest format"):
        m.read_manifest(str(tmp_path / "x"), "json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        m.read_manifest(str(tmp_path / "nope.csv"), "csv")
