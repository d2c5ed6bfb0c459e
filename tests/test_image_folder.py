"""Image folders (latentmix.data.image_folder): tiny PNG/JPEG folders written here with Pillow, read
on demand through `latentmix train --data DIR`; every bad folder is one ConfigError naming it."""

import csv
import json

import numpy as np
import pytest
import torch

from latentmix.cli import main
from latentmix.data import load_dataset
from latentmix.data.image_folder import ImageFolder
from latentmix.errors import ConfigError

Image = pytest.importorskip("PIL.Image", reason="Pillow reads the image folders")


def write_images(root, per_class=12, size=(8, 6), classes=("cat", "dog", "emu"), mode="L", suffix=".png", seed=0):
    """Class k's images are bright in a band of rows k*2..k*2+1 (learnable), with noise; returns
    {path: pixel array as written}."""
    rng = np.random.default_rng(seed)
    written = {}
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 80, size=shape, dtype=np.uint8)
            pixels[2 * k: 2 * k + 2] = 220
            path = root / name / f"{i:03d}{suffix}"
            Image.fromarray(pixels, mode=mode).save(path)
            written[path] = pixels
    return written


def test_items_are_the_pixels_written_with_class_ids_by_sorted_folder_name(tmp_path):
    written = write_images(tmp_path, per_class=3, classes=("zebra", "ant"))
    folder = ImageFolder(tmp_path)
    assert folder.classes == ["ant", "zebra"] and folder.size == (8, 6) and folder.mode == "L"
    for position, path in enumerate(folder.files):
        image, label = folder[position]
        assert image.dtype == torch.uint8 and image.shape == (1, 6, 8)
        assert np.array_equal(image[0].numpy(), written[path])  # PNG is lossless
        assert label == (0 if path.parent.name == "ant" else 1)


def test_rgb_jpeg_images_read_as_three_channels_in_order(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pixels = np.zeros((6, 8, 3), dtype=np.uint8)
        pixels[..., 0], pixels[..., 1] = 200, 100  # red 200, green 100, blue 0 everywhere
        Image.fromarray(pixels, mode="RGB").save(tmp_path / name / "x.jpeg", quality=95)
    folder = ImageFolder(tmp_path)
    image, _ = folder[0]
    assert folder.mode == "RGB" and image.shape == (3, 6, 8)
    # JPEG is lossy, but a flat colour comes back within a few levels, channel first
    assert np.allclose(image.float().mean(dim=(1, 2)).numpy(), [200, 100, 0], atol=4)


def test_train_reads_an_image_folder_and_detect_reads_it_again(tmp_path):
    write_images(tmp_path / "images", per_class=20)
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "images"), "--method", "lr-m-dyr-h", "--epochs", "3",
                 "--warmup-epochs", "1", "--batch-size", "16", "--loader-workers", "1", "--noise", "0.2",
                 "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == 0
    summary = json.loads((out / "result.json").read_text())
    assert summary["epochs"] == 3 and summary["bootstrap_start_epoch"] == 2
    record = json.loads((out / "config.json").read_text())
    assert record["dataset_info"]["classes"] == ["cat", "dog", "emu"]
    with open(out / "label_issues.csv") as handle:
        rows = list(csv.DictReader(handle))
    # every image of the folder is scored: 54 trained on, 6 (10%, stratified) the validation split
    assert len(rows) == 60 and sorted(int(r["index"]) for r in rows) == list(range(60))
    files = ImageFolder(tmp_path / "images").files
    assert all(r["file"] == str(files[int(r["index"])].relative_to(tmp_path / "images")) for r in rows)
    # the validation rows keep their folders' labels (the synthetic noise is on the training rows)
    assert all(r["file"].split("/")[0] == ["cat", "dog", "emu"][int(r["given_label"])] for r in rows if r["split"] == "val")
    issues = (out / "label_issues.csv").read_bytes()
    (out / "label_issues.csv").unlink()
    assert main(["detect", str(out)]) == 0
    assert (out / "label_issues.csv").read_bytes() == issues  # rebuilt from the checkpoint, the folder read again


def test_an_interrupted_image_folder_run_resumes_to_the_same_files(tmp_path):
    """The streamed path resumes exactly too, with another number of workers (how the data are read
    is not part of the run)."""
    from latentmix.config import RunConfig
    from latentmix.training import train

    write_images(tmp_path / "images", per_class=16)
    config = dict(dataset="images", data=str(tmp_path / "images"), method="lr-m-dyr-h", epochs=3, warmup_epochs=1,
                  batch_size=16, noise=0.25, seed=1, device="cpu")

    def stop_after_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    train(RunConfig(**config, loader_workers=0), run_dir=tmp_path / "straight", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(**config, loader_workers=2), run_dir=tmp_path / "resumed", progress=False, on_epoch_end=stop_after_2)
    train(RunConfig(**config, loader_workers=1), run_dir=tmp_path / "resumed", resume=True, progress=False)
    for name in ("metrics.csv", "result.json", "label_issues.csv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_train_and_val_sub_folders_are_the_two_splits(tmp_path):
    write_images(tmp_path / "train", per_class=10)
    write_images(tmp_path / "val", per_class=3, seed=1)
    dataset = load_dataset("ignored", data_path=str(tmp_path), workers=0)
    assert (dataset.num_train, dataset.num_val, dataset.num_classes) == (30, 9, 3)
    assert dataset.info["val_source"] == "folder" and dataset.val_given_labels is None


def _message(tmp_path, capsys, folder):
    code = main(["train", "--data", str(folder), "--epochs", "1", "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    return error


def test_an_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    error = _message(tmp_path, capsys, tmp_path / "empty")
    assert str(tmp_path / "empty") in error and "holds no images" in error and "one sub-folder per class" in error


def test_one_class_is_refused(tmp_path, capsys):
    write_images(tmp_path / "one", classes=("cat",))
    error = _message(tmp_path, capsys, tmp_path / "one")
    assert "one class only ('cat')" in error and "at least two class sub-folders" in error


def test_an_unreadable_image_is_named(tmp_path, capsys):
    write_images(tmp_path / "bad", per_class=3)
    (tmp_path / "bad" / "dog" / "broken.png").write_bytes(b"not a png at all")
    error = _message(tmp_path, capsys, tmp_path / "bad")
    assert f"cannot read image {tmp_path / 'bad' / 'dog' / 'broken.png'}" in error and "remove or re-save" in error


def test_mixed_sizes_are_refused_with_both_sizes(tmp_path, capsys):
    write_images(tmp_path / "mixed", per_class=3)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "mixed" / "emu" / "big.png")
    error = _message(tmp_path, capsys, tmp_path / "mixed")
    assert "mixes image sizes" in error and "8x6" in error and "10x10" in error and "resize" in error


def test_a_validation_folder_with_other_classes_is_refused(tmp_path):
    write_images(tmp_path / "train", per_class=3)
    write_images(tmp_path / "val", per_class=3, classes=("cat", "dog"))
    with pytest.raises(ConfigError, match=r"class folders \['cat', 'dog'\].*has \['cat', 'dog', 'emu'\]"):
        load_dataset("ignored", data_path=str(tmp_path), workers=0)


def test_detect_and_predict_name_the_files_and_classes(tmp_path, capsys):
    write_images(tmp_path / "images", per_class=10)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "images"), "--method", "lr-m-dyr-h", "--epochs", "2",
                 "--batch-size", "16", "--loader-workers", "0", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    with open(out / "label_issues.csv") as handle:
        rows = list(csv.DictReader(handle))
    issues = (out / "label_issues.csv").read_bytes()
    capsys.readouterr()
    assert main(["detect", str(out), "--top", "30"]) == 0
    printed = capsys.readouterr().out
    assert (out / "label_issues.csv").read_bytes() == issues  # read as written (a file column), not rebuilt
    names = ["cat", "dog", "emu"]
    for row in rows:  # every row printed with its file, split and class names, as label_issues.csv has them
        split = ", val" if row["split"] == "val" else ""
        given, predicted = int(row["given_label"]), int(row["predicted_label"])
        assert (f"  {row['file']} (row {row['index']}{split}): given {names[given]} ({given}), "
                f"predicted {names[predicted]} ({predicted}), P(noisy) ") in printed
    # predict on the folder: each file by its path, its class named, its folder's label beside it
    assert main(["predict", str(out), "--data", str(tmp_path / "images"), "--out", str(tmp_path / "p.csv"),
                 "--weights", "last", "--device", "cpu"]) == 0
    with open(tmp_path / "p.csv") as handle:
        predicted_rows = list(csv.DictReader(handle))
    assert len(predicted_rows) == 30
    assert list(predicted_rows[0]) == ["file", "predicted_label", "predicted_class", "given_label", "p_cat", "p_dog", "p_emu"]
    by_file = {row["file"]: row for row in predicted_rows}
    for row in rows:
        mine = by_file[row["file"]]
        assert mine["given_label"] == str(names.index(row["file"].split("/")[0]))
        assert mine["predicted_class"] == names[int(mine["predicted_label"])]


# ------------------------------------------------------------------------------------------------
# issue 25.1: every PNG/JPEG flavour reads as the picture it shows


def test_16_bit_greyscale_pngs_are_scaled_by_their_bit_depth_not_clipped(tmp_path):
    """A 16-bit PNG's 0..65535 map onto 0..255 (PNG spec 12.5): 20000 -> 78, 40000 -> 156 (hand
    computed as round(v * 255 / 65535)); the old reader clipped everything above 255 to white."""
    levels = {"dark": [0, 20000], "bright": [40000, 65535]}
    for name, (low, high) in levels.items():
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = np.full((4, 5), low, dtype=np.uint16)
            pixels[:, 2:] = high
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    folder = ImageFolder(tmp_path)
    assert folder.mode == "L" and folder.classes == ["bright", "dark"]
    expected = {"dark": (0, 78), "bright": (156, 255)}
    for position, path in enumerate(folder.files):
        image, _ = folder[position]
        low, high = expected[path.parent.name]
        assert image.dtype == torch.uint8 and image.shape == (1, 4, 5)
        assert (image[0, :, :2] == low).all() and (image[0, :, 2:] == high).all(), image


def test_exif_orientation_turns_the_image_upright_in_the_scan_and_the_pixels(tmp_path):
    """Orientation 6 (stored rotated: display by turning 90 degrees clockwise): an 8x6 stored image
    is 6 wide and 8 high, and its stored top-left pixel (row 0, column 0) shows at the top right
    (row 0, column 5)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        stored = np.zeros((6, 8), dtype=np.uint8)
        stored[0, 0] = 255
        Image.fromarray(stored).save(tmp_path / name / "turned.png", exif=exif.tobytes())
    folder = ImageFolder(tmp_path)
    assert folder.size == (6, 8)
    image, _ = folder[0]
    assert image.shape == (1, 8, 6)
    assert [tuple(p) for p in torch.nonzero(image[0]).tolist()] == [(0, 5)]


def test_palette_grey_alpha_and_cmyk_images_read_as_their_colours(tmp_path):
    """A palette PNG with a transparent entry gives its palette colour, grey+alpha its grey
    (alpha dropped), a CMYK JPEG of cyan 0 / magenta 255 / yellow 255 / black 0 is red."""
    for name in ("p", "q"):
        (tmp_path / name).mkdir()
        palette = Image.new("P", (4, 4), 1)
        palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
        palette.save(tmp_path / name / "palette.png", transparency=0)
        Image.new("LA", (4, 4), (100, 0)).save(tmp_path / name / "grey_alpha.png")
        Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / name / "cmyk.jpg", quality=100)
    folder = ImageFolder(tmp_path)
    assert folder.mode == "RGB"
    colours = {path.name: folder[i][0][:, 0, 0].tolist() for i, path in enumerate(folder.files)}
    assert colours["palette.png"] == [10, 200, 30] and colours["grey_alpha.png"] == [100, 100, 100]
    assert np.allclose(colours["cmyk.jpg"], [255, 0, 0], atol=3)
    grey_only = tmp_path / "grey"
    for name in ("x", "y"):
        (grey_only / name).mkdir(parents=True)
        Image.new("LA", (4, 4), (100, 255)).save(grey_only / name / "a.png")
    assert ImageFolder(grey_only).mode == "L" and ImageFolder(grey_only)[0][0].shape == (1, 4, 4)


# ------------------------------------------------------------------------------------------------
# issue 25.4 / 25.9: only folders of images are classes; a run folder inside the data, links
# outside the folder and train/ without val/ are one clear line each


def test_sub_folders_without_images_are_not_classes(tmp_path):
    write_images(tmp_path, per_class=3, classes=("cat", "dog"))
    (tmp_path / "logs").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    (tmp_path / "cat" / "._0.png").write_bytes(b"macOS resource fork, not a PNG")
    folder = ImageFolder(tmp_path)
    assert folder.classes == ["cat", "dog"] and len(folder) == 6


def test_a_run_folder_inside_the_image_folder_is_refused(tmp_path, capsys):
    write_images(tmp_path / "photos", per_class=3, classes=("cat", "dog"))
    code = main(["train", "--data", str(tmp_path / "photos"), "--epochs", "1", "--out", str(tmp_path / "photos" / "run"),
                 "--device", "cpu", "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert "--out" in error and "is inside --data" in error and not (tmp_path / "photos" / "run").exists()
    # a run folder that got there anyway (copied in) is refused by the scan, not read as class "run"
    (tmp_path / "photos" / "run").mkdir()
    (tmp_path / "photos" / "run" / "metrics.csv").write_text("epoch\n")
    with pytest.raises(ConfigError, match="is a latentmix run folder inside the data folder"):
        ImageFolder(tmp_path / "photos")


def test_links_outside_the_folder_and_second_paths_to_an_image_are_refused(tmp_path):
    write_images(tmp_path / "photos", per_class=3, classes=("cat", "dog"))
    write_images(tmp_path / "elsewhere", per_class=2, classes=("emu",))
    (tmp_path / "photos" / "emu").symlink_to(tmp_path / "elsewhere" / "emu", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"is a link to .*elsewhere.*, outside .*photos.*copy the image in"):
        ImageFolder(tmp_path / "photos")
    (tmp_path / "photos" / "emu").unlink()
    (tmp_path / "photos" / "kitten").symlink_to(tmp_path / "photos" / "cat", target_is_directory=True)
    with pytest.raises(ConfigError, match="are one file .* through a link"):
        ImageFolder(tmp_path / "photos")


def test_train_without_val_is_named_as_such(tmp_path, capsys):
    write_images(tmp_path / "split" / "train", per_class=3)
    error = _message(tmp_path, capsys, tmp_path / "split")
    assert "has a train/ folder but no val/" in error and "--val-split" in error


def test_file_names_that_start_like_a_formula_are_escaped_in_label_issues(tmp_path):
    """issue 25.9: a cell starting with = + - @ is a formula to a spreadsheet (OWASP, CSV injection):
    it is written with a leading quote; other names unchanged."""
    from latentmix.config import RunConfig
    from latentmix.training import train

    write_images(tmp_path / "photos", per_class=6, classes=("=cmd", "dog"))
    (tmp_path / "photos" / "dog" / "000.png").rename(tmp_path / "photos" / "dog" / "@SUM(1+1).png")
    (tmp_path / "photos" / "dog" / "001.png").rename(tmp_path / "photos" / "dog" / "-2+3.png")
    train(RunConfig(dataset="photos", data=str(tmp_path / "photos"), epochs=1, batch_size=4, device="cpu",
                    loader_workers=0), run_dir=tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "label_issues.csv") as handle:
        files = sorted(row["file"] for row in csv.DictReader(handle))
    assert "'@SUM(1+1).png" not in files  # the class folder comes first in the relative path
    assert "dog/@SUM(1+1).png" in files and "dog/002.png" in files
    assert all(name.startswith("'=cmd/") for name in files if "cmd" in name) and len(files) == 12
