"""Every kind of image input gives the same features; every bad input gets a clear error."""

from __future__ import annotations

import pathlib
import re
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FLOAT32, TinyCNN
from PIL import Image

from sktransfer import PretrainedFeatures
from sktransfer.inputs import AmbiguousChannelsWarning, ImagePreprocess, as_images

NO_PREPROCESS = ImagePreprocess(channels=None)


def features(X, **kw):
    """Features of X through a fixed tiny conv net, no resizing or normalisation."""
    return PretrainedFeatures(TinyCNN(), cache=False, **kw).fit_transform(X)


# --------------------------------------------------------------------------- kinds of input


def _nhwc_uint8(X, files):
    return X


def _nhwc_float(X, files):
    return X / 255.0


def _nchw_uint8(X, files):
    return X.transpose(0, 3, 1, 2).copy()


def _nchw_float32(X, files):
    return (X.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)


def _torch_nchw(X, files):
    return torch.from_numpy(X.transpose(0, 3, 1, 2) / 255.0)


def _pil_list(X, files):
    return [Image.fromarray(x) for x in X]


def _path_list(X, files):
    return files


def _pathlib_list(X, files):
    return [pathlib.Path(p) for p in files]


def _path_array(X, files):
    return np.array(files)


def _path_series(X, files):
    return pd.Series(files, name="photo")


def _path_frame(X, files):
    return pd.DataFrame({"photo": files})


KINDS = [
    _nhwc_uint8,
    _nhwc_float,
    _nchw_uint8,
    _nchw_float32,
    _torch_nchw,
    _pil_list,
    _path_list,
    _pathlib_list,
    _path_array,
    _path_series,
    _path_frame,
]


@pytest.fixture(scope="module")
def rgb_files(tmp_path_factory, rgb_images):
    root = tmp_path_factory.mktemp("rgb16")
    files = []
    for i, x in enumerate(rgb_images[:12]):
        files.append(str(root / f"{i}.png"))
        Image.fromarray(x).save(files[-1])
    return files


@pytest.mark.parametrize("kind", KINDS, ids=lambda f: f.__name__.lstrip("_"))
def test_every_input_kind_gives_the_same_features(kind, rgb_images, rgb_files):
    X = rgb_images[:12]
    expected = features(X)
    np.testing.assert_allclose(features(kind(X, rgb_files)), expected, rtol=1e-5, atol=1e-6)


def test_grey_images_become_rgb_for_an_rgb_backbone(digits):
    X = digits[0][:6]
    pf = PretrainedFeatures("resnet18", weights=None, image_size=16, random_state=0, cache=False)
    grey = pf.fit_transform(X)
    rgb = pf.transform(np.repeat(X[..., None], 3, axis=-1))
    np.testing.assert_allclose(grey, rgb, rtol=1e-5, atol=1e-6)


def test_grey_and_rgb_files_mix_in_one_batch_for_an_rgb_backbone(image_files):
    files = image_files["grey"][:3] + image_files["rgb"][:3]
    Z = PretrainedFeatures("resnet18", weights=None, image_size=16, random_state=0).fit_transform(
        files
    )
    assert Z.shape == (6, 512)


def test_files_of_different_sizes_are_resized_to_image_size(image_files):
    Z = PretrainedFeatures(TinyCNN(), image_size=20).fit_transform(image_files["rgb"])
    assert Z.shape == (6, 4)


def test_file_paths_decode_in_two_worker_processes_with_the_same_features(image_files):
    files = image_files["grey"][:10] + image_files["rgb"]
    pf = PretrainedFeatures(
        "resnet18", weights=None, image_size=16, random_state=0, cache=False, batch_size=4
    )
    serial = pf.fit_transform(files)
    parallel = pf.set_params(num_workers=2).transform(files)
    np.testing.assert_allclose(parallel, serial, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda X: X, (2, 3, 3, 32)),  # numpy: channels last, so 3x32 images
        (lambda X: torch.from_numpy(X), (2, 3, 32, 3)),  # torch: channels first, 32x3 images
    ],
    ids=["numpy_reads_channels_last", "torch_reads_channels_first"],
)
def test_an_ambiguous_shape_follows_the_array_libraries_convention(make, shape):
    X = np.random.RandomState(0).rand(2, 3, 32, 3).astype(np.float32)
    with pytest.warns(AmbiguousChannelsWarning, match=r"could have their channels on axis 1 or"):
        source = as_images(make(X))
    assert source.load([0, 1], NO_PREPROCESS).shape == shape


def test_uint8_pixels_are_scaled_to_0_1():
    X = np.full((1, 4, 4), 255, dtype=np.uint8)
    assert as_images(X).load([0], NO_PREPROCESS).max().item() == 1.0


def test_validating_a_float_image_array_copies_nothing():
    X = np.random.RandomState(0).rand(200, 64, 64, 3).astype(np.float32)  # 9.8 MB
    tracemalloc.start()
    source = as_images(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert source.X is X
    assert peak < X.nbytes / 100


# --------------------------------------------------------------------------- bad input


def test_missing_file_names_the_row_and_path(image_files, tmp_path):
    files = image_files["grey"][:2] + [str(tmp_path / "nope.png")]
    expected = f"X row 2: image file not found: '{tmp_path / 'nope.png'}'"
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        PretrainedFeatures(TinyCNN()).fit(files)


@pytest.fixture
def corrupt_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return str(path)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_file_names_the_row_and_path(image_files, corrupt_file, num_workers):
    pf = PretrainedFeatures(TinyCNN(), image_size=8, num_workers=num_workers)
    pf.fit(image_files["rgb"][:2])
    with pytest.raises(
        ValueError, match=re.escape(f"X row 3: cannot read image file '{corrupt_file}'")
    ):
        pf.transform(image_files["rgb"][:3] + [corrupt_file])


@pytest.mark.parametrize(
    "X", [np.zeros((0, 8, 8)), [], pd.Series([], dtype=object)], ids=["array", "list", "series"]
)
def test_empty_input_is_an_error(X):
    with pytest.raises(ValueError, match="X is empty: 0 images were given"):
        as_images(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinity_names_the_row(bad):
    X = np.random.RandomState(0).rand(5, 8, 8)
    X[3, 2, 1] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinity at row 3"):
        as_images(X)


def test_float_pixels_outside_0_1_name_the_row_and_the_fix():
    X = np.random.RandomState(0).rand(300, 8, 8)
    X[270] *= 255
    with pytest.raises(
        ValueError,
        match=r"float images must lie in \[0, 1\]; row 270 spans .* "
        r"Divide by 255",
    ):
        as_images(X)


def test_integer_pixels_outside_0_255_name_the_row():
    X = np.zeros((3, 8, 8), dtype=np.int16)
    X[1, 0, 0] = 1000
    with pytest.raises(
        ValueError, match=r"integer images must lie in \[0, 255\]; row 1 spans \[0, 1000\]"
    ):
        as_images(X)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((4, 8), "X has 2 dimensions (shape (4, 8)); image arrays must be (N, H, W) grey"),
        ((2, 3, 8, 8, 1), "X has 5 dimensions"),
        (
            (2, 8, 8, 4),
            "cannot find a channel axis of size 1 or 3. Images must be (N, H, W) grey, "
            "(N, H, W, C) or (N, C, H, W) with C in {1, 3}; drop the alpha channel",
        ),
        ((2, 5, 8, 8), "X has shape (2, 5, 8, 8): cannot find a channel axis of size 1 or 3"),
    ],
    ids=["2d", "5d", "rgba", "five_channels"],
)
def test_wrong_dimensions_or_channels_are_explained(shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        as_images(np.zeros(shape, dtype=np.float32))


def test_a_2d_table_with_an_image_backbone_says_it_needs_a_tabular_backbone():
    with pytest.raises(ValueError, match="needs a tabular backbone"):
        PretrainedFeatures("efficientnet_lite0").fit(np.zeros((4, 8), dtype=np.float32))


def test_mixed_element_types_name_the_rows(image_files):
    X = [image_files["grey"][0], image_files["grey"][1], Image.open(image_files["grey"][2])]
    with pytest.raises(
        TypeError, match="X mixes element types: row 0 is a str, row 2 is a PIL.Image"
    ):
        as_images(X)


def test_a_missing_value_among_paths_names_the_row(image_files):
    with pytest.raises(TypeError, match=r"X row 1 is a float \(nan\); expected image file paths"):
        as_images(pd.Series([image_files["grey"][0], None, image_files["grey"][1]]))


@pytest.mark.parametrize(
    "X", [np.zeros((2, 8, 8), dtype=bool), np.array([["a"]])], ids=["bool", "strings_2d"]
)
def test_non_numeric_arrays_are_rejected(X):
    with pytest.raises((TypeError, ValueError), match="uint8 or float|expected 1-D|is a"):
        as_images(X)


def test_a_single_path_asks_for_a_list(image_files):
    with pytest.raises(
        TypeError, match=r"X is a single image; pass a list of images \(e.g. \[X\]\)"
    ):
        as_images(image_files["grey"][0])


def test_a_dataframe_with_two_columns_asks_for_one():
    df = pd.DataFrame({"a": ["x.png"], "b": ["y.png"]})
    with pytest.raises(ValueError, match="X is a DataFrame with 2 columns; pass a single column"):
        as_images(df)


def test_images_of_different_sizes_without_image_size_ask_for_it(image_files):
    with pytest.raises(
        ValueError,
        match="images of different sizes in one batch: row 0 has "
        r"\(40, 24\), row 1 has \(38, 27\); set image_size",
    ):
        PretrainedFeatures(TinyCNN(), cache=False).fit(image_files["rgb"]).transform(
            image_files["rgb"]
        )


def test_grey_and_rgb_images_for_a_backbone_without_rgb_preprocessing_name_the_rows(image_files):
    files = [image_files["rgb"][0], image_files["grey"][0]]
    with pytest.raises(
        ValueError, match="images of different channels in one batch: row 0 has 3, row 1 has 1"
    ):
        PretrainedFeatures(TinyCNN(), image_size=8, cache=False).fit(files).transform(files)


def test_a_wrong_channel_count_for_the_backbone_is_a_value_error_not_a_torch_trace():
    X = np.random.RandomState(0).rand(2, 8, 8).astype(np.float32)  # grey, TinyCNN wants 3
    with pytest.raises(
        ValueError,
        match=r"backbone 'TinyCNN' failed on a batch of shape "
        r"\(1, 1, 8, 8\)",
    ):
        PretrainedFeatures(TinyCNN()).fit(X)


def test_files_are_decoded_batch_by_batch_not_all_at_once(tmp_path):
    files = []
    for i in range(8):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((64, 64, 3), 30 * i, np.uint8)).save(files[-1])
    X = files * 30  # 240 rows: 2.9 MB of decoded pixels, 12 KB an image
    pf = PretrainedFeatures(TinyCNN(), batch_size=16, cache=False).fit(X[:1])
    tracemalloc.start()
    Z = pf.transform(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert Z.shape == (240, 4)
    assert peak < 16 * 64 * 64 * 3 * 4  # less than one batch's worth, even as float32


def test_a_bfloat16_tensor_is_read_like_float32():
    X = torch.rand(2, 3, 8, 8)
    expected = as_images(X).load([0, 1], NO_PREPROCESS)
    got = as_images(X.bfloat16()).load([0, 1], NO_PREPROCESS)
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=0)


def test_16_bit_png_files_scale_by_65535(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(path)
    pixel = as_images([str(path)]).load([0], NO_PREPROCESS)[0, 0, 0, 0].item()
    assert pixel == pytest.approx(128 / 255)


# --------------------------------------------------------------------------- mixed sizes

RESIZE_CROP = ImagePreprocess(crop=(16, 16), resize=20, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.mark.parametrize(
    "kind", [_pil_list, _path_list, _pathlib_list], ids=["pil", "paths", "pathlib"]
)
def test_an_image_gets_the_same_model_input_alone_and_in_any_batch(image_files, kind):
    # rows 0 and 1: photos of 40x24 and 38x27 px; row 2: row 0 again (a same-size neighbour)
    files = image_files["rgb"] + image_files["rgb"][:1]
    X = [Image.open(f).convert("RGB") for f in files] if kind is _pil_list else kind(None, files)
    images = as_images(X)
    for row, batches in ((0, ([0, 2], [0, 1], [1, 0, 2])), (1, ([1, 0], [2, 1]))):
        alone = images.load([row], RESIZE_CROP)[0]
        assert alone.shape == (3, 16, 16)
        for batch in batches:
            inside = images.load(batch, RESIZE_CROP)[batch.index(row)]
            torch.testing.assert_close(inside, alone, rtol=0, atol=1e-6)


def test_a_list_of_numpy_images_of_different_sizes_reads_like_the_same_pil_images(photos):
    """Arrays of different sizes were refused while the same images as PIL worked."""
    kw = {"image_size": 16}
    as_pil = features([Image.fromarray(a) for a in photos], **kw)
    np.testing.assert_allclose(features(list(photos), **kw), as_pil, atol=1e-6)
    # A float image in [0, 1] among them is read as such, not divided by 255 again.
    mixed = [photos[0].astype(np.float32) / 255, *photos[1:]]
    np.testing.assert_allclose(features(mixed, **kw), as_pil, atol=1e-5)


# --------------------------------------------------------------------------- extreme shapes

_STRIPS = r"""
import resource, sys
import numpy as np
from PIL import Image
from sktransfer import PretrainedFeatures

root = sys.argv[1]
rng = np.random.RandomState(0)
Image.fromarray(rng.randint(0, 256, (40, 30, 3), dtype=np.uint8)).save(f"{root}/small.png")
# A 1 x 100,000 strip at image_size=32 and a 4 x 40,000 one at the weights' 224 px.
runs = []
for shape, size in (((1, 100_000), 32), ((4, 40_000), None)):
    path = f"{root}/strip_{shape[0]}.png"
    Image.fromarray(rng.randint(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
    pf = PretrainedFeatures("efficientnet_lite0", image_size=size, cache=False)
    pf.fit([f"{root}/small.png"]).transform([f"{root}/small.png"])  # warm: weights, kernels
    runs.append((pf, path))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
# A guard, so that a regression fails here fast instead of exhausting the machine.
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, ((vm + 2 * 1024**2) * 1024, resource.RLIM_INFINITY))
for pf, path in runs:
    Z = pf.transform([path])
    assert Z.shape == (1, 1280) and np.isfinite(Z).all()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) // 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; ru_maxrss in KiB")
def test_extreme_strips_are_extracted_in_bounded_memory(tmp_path):
    """Resizing a 4 x 40,000 px strip's short side to 256 px first would make it 2.6
    million px long: 7.8 GB as floats, for a 224 px crop. Only what the crop sees is
    resized, so the peak memory grows by megabytes, not gigabytes."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _STRIPS, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mb = int(done.stdout.split()[-1])
    assert growth_mb < 100, f"peak memory grew by {growth_mb} MB for one strip"


@pytest.mark.parametrize(
    "shape, resize, crop",
    [((8, 400), 16, (14, 14)), ((400, 8), 16, (14, 14)), ((100, 5000), 10, (10, 10))],
)
def test_a_long_image_gets_torchvisions_resize_and_centre_crop(shape, resize, crop):
    """Cropping before resizing is an economy, not another answer."""
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    expected = TF.center_crop(TF.resize(x, resize, antialias=True), list(crop))
    got = ImagePreprocess(crop=crop, resize=resize, channels=None).resize_crop(x)
    torch.testing.assert_close(got, expected)


def test_an_extreme_image_without_a_crop_is_refused_naming_the_row():
    X = np.full((2, 1, 20_000), 128, np.uint8)  # resized to 64 x 1.28 million px
    expected = r"X: an image of 1x20000 px would be resized to 64x1280000 px"
    with pytest.raises(ValueError, match=expected):
        as_images(X).load([0, 1], ImagePreprocess(resize=64, crop=None, channels=None))


# --------------------------------------------------------------------------- PIL modes, EXIF


def grey_features(X):
    return PretrainedFeatures(TinyCNN(in_channels=1), cache=False).fit_transform(X)


def test_a_float_pil_image_is_read_as_is_like_a_float_array():
    """Mode "F" pixels in [0, 1] are taken as they are: a picture and its half-bright copy
    are two images (they were both divided by their own maximum)."""
    rng = np.random.RandomState(0)
    arr = rng.rand(6, 5).astype(np.float32)
    bright, dim = Image.fromarray(arr), Image.fromarray(arr / 2)
    pixels = as_images([bright, dim]).load([0, 1], NO_PREPROCESS)[:, 0].numpy()
    np.testing.assert_allclose(pixels, [arr, arr / 2], rtol=1e-6)
    np.testing.assert_allclose(
        grey_features([bright, dim]), grey_features(np.stack([arr, arr / 2])), **FLOAT32
    )


def test_a_float_pil_image_above_1_names_the_row_and_the_fix():
    imgs = [
        Image.fromarray(np.zeros((4, 4), np.float32)),
        Image.fromarray(np.full((4, 4), 7.0, np.float32)),
    ]
    expected = (
        r"X row 1: a mode 'F' PIL image spans \[7.0, 7.0\]; float images must lie in \[0, 1\]"
    )
    with pytest.raises(ValueError, match=expected):
        grey_features(imgs)


def test_a_phone_photo_is_read_upright_as_its_exif_orientation_says(tmp_path):
    upright = np.random.RandomState(0).randint(0, 256, (12, 8, 3), dtype=np.uint8)
    sideways = np.rot90(upright, k=1)  # as the sensor stored it: 8 x 12
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.png"
    Image.fromarray(sideways).save(path, exif=exif)
    pixels = as_images([str(path)]).load([0], NO_PREPROCESS)
    assert tuple(pixels.shape) == (1, 3, 12, 8)
    np.testing.assert_allclose(features([str(path)]), features(upright[None]), **FLOAT32)
