"""Downloads and real-data sources, against a local HTTP server in the real formats.

The real download code (torchvision's dataset classes, torch.hub's
downloader) fetches tiny files from an `http.server` on 127.0.0.1: MNIST's
gzipped idx files, CIFAR10's python tarball, a weights `.pth` whose name
carries its sha256 prefix. The published checksums of the real files are
replaced by those of the tiny ones (monkeypatch), the mirror URL is the
`mirror` option a study config sets. A corrupt or truncated file must give a
clear error and leave no output behind. ImageNet is never downloaded: its
directory check and decoding run on a tiny ImageFolder tree.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image

import tolerance
from lesion import catalog, cli, data, fetch, imagenet, models, tensorfiles

REPO = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)
MNIST_TRAIN, MNIST_TEST = 20, 10
CIFAR_PER_BATCH = 4


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(directory served, base URL): an HTTP server on 127.0.0.1 in a thread."""
    root = tmp_path_factory.mktemp("mirror")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _idx(array: np.ndarray) -> bytes:
    """MNIST's idx format: magic (0, 0, uint8 type, ndim), big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def mnist_files(server):
    """The four MNIST .gz files, tiny; returns {file name: (md5, array)}."""
    root, _ = server
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (MNIST_TRAIN, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, MNIST_TRAIN),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (MNIST_TEST, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, MNIST_TEST),
    }
    out = {}
    for name, array in arrays.items():
        path = root / f"{name}.gz"
        path.write_bytes(gzip.compress(_idx(array), mtime=0))
        out[path.name] = (md5(path), array)
    return out


@pytest.fixture
def mnist_checksums(monkeypatch, mnist_files):
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources",
                        [(name, digest) for name, (digest, _) in mnist_files.items()])


def _cifar_tarball(path: Path, batches: dict[str, dict]) -> dict[str, str]:
    """cifar-10-python.tar.gz with pickled batches, as the original; md5 of each member."""
    sums = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, content in batches.items():
            blob = pickle.dumps(content)
            sums[name] = hashlib.md5(blob).hexdigest()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return sums


@pytest.fixture(scope="module")
def cifar_files(server):
    """A tiny CIFAR10 tarball: 5 training batches and a test batch of 4 images each."""
    root, _ = server
    batches = {f"data_batch_{i}": {"data": rng.integers(0, 256, (CIFAR_PER_BATCH, 3072), dtype=np.uint8),
                                   "labels": rng.integers(0, 10, CIFAR_PER_BATCH).tolist()}
               for i in range(1, 6)}
    batches["test_batch"] = {"data": rng.integers(0, 256, (CIFAR_PER_BATCH, 3072), dtype=np.uint8),
                             "labels": rng.integers(0, 10, CIFAR_PER_BATCH).tolist()}
    batches["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)]}
    tarball = root / "cifar-10-python.tar.gz"
    sums = _cifar_tarball(tarball, batches)
    return {"tgz_md5": md5(tarball), "sums": sums, "batches": batches}


@pytest.fixture
def cifar_checksums(monkeypatch, cifar_files):
    cls, sums = torchvision.datasets.CIFAR10, cifar_files["sums"]
    monkeypatch.setattr(cls, "tgz_md5", cifar_files["tgz_md5"])
    monkeypatch.setattr(cls, "train_list",
                        [[f"data_batch_{i}", sums[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": sums["batches.meta"]})


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --- MNIST -------------------------------------------------------------------


def test_mnist_downloads_from_the_mirror_and_keeps_the_official_split(
        tmp_path, server, mnist_files, mnist_checksums):
    out = tmp_path / "resources" / "mnist" / "torchvision"
    assert cli.main(["data", "download", "--dataset", "mnist", "--out", str(out),
                     "--mirror", server[1]]) == 0
    assert _leftovers(out.parent) == []
    train, test = tmp_path / "train.safetensors", tmp_path / "test.safetensors"
    assert cli.main(["data", "tensors", "--dataset", "mnist", "--raw", str(out),
                     "--train-out", str(train),
                     "--test-out", str(test), "--test-fraction", "0.25", "--seed", "0"]) == 0
    for path, prefix, n in ((train, "train", MNIST_TRAIN), (test, "t10k", MNIST_TEST)):
        images, labels = data.load_split(path)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        pixels = mnist_files[f"{prefix}-images-idx3-ubyte.gz"][1]
        assert torch.equal(images[:, 0], torch.from_numpy(pixels / 255.0).float())
        assert labels.tolist() == mnist_files[f"{prefix}-labels-idx1-ubyte.gz"][1].tolist()


def test_truncated_mnist_file_is_refused_and_nothing_is_written(
        tmp_path, server, mnist_files, mnist_checksums, capsys):
    root, url = server
    bad = root / "truncated"
    bad.mkdir(exist_ok=True)
    for name in mnist_files:
        shutil.copy(root / name, bad / name)
    images = bad / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-50])
    out = tmp_path / "mnist"
    args = ["data", "download", "--dataset", "mnist", "--out", str(out), "--mirror", url + "truncated/"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz is corrupt or truncated: md5" in err
    assert f"expected {mnist_files['t10k-images-idx3-ubyte.gz'][0]}" in err
    assert "nothing was written" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_mirror_without_the_files_names_the_failure(tmp_path, server, mnist_checksums):
    with pytest.raises(fetch.DownloadError, match=r"mnist: download from .*/empty/ failed .*404"):
        fetch.download_dataset("mnist", tmp_path / "mnist", mirror=server[1] + "empty/")
    assert list(tmp_path.iterdir()) == []


# --- CIFAR10 -----------------------------------------------------------------


def test_cifar10_downloads_from_the_mirror_and_keeps_the_official_split(
        tmp_path, server, cifar_files, cifar_checksums):
    out = tmp_path / "cifar10"
    fetch.download_dataset("cifar10", out, mirror=server[1])
    train, test = tmp_path / "train.safetensors", tmp_path / "test.safetensors"
    data.make_tensors("cifar10", out, train, test, test_fraction=0.25, seed=0)
    images, labels = data.load_split(test)
    batch = cifar_files["batches"]["test_batch"]
    assert images.shape == (CIFAR_PER_BATCH, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(batch["data"].reshape(-1, 3, 32, 32) / 255.0).float())
    assert labels.tolist() == batch["labels"]
    assert data.load_split(train)[0].shape == (5 * CIFAR_PER_BATCH, 3, 32, 32)


def test_corrupt_cifar10_tarball_is_refused_and_nothing_is_written(
        tmp_path, server, cifar_files, cifar_checksums):
    root, url = server
    bad = root / "corrupt"
    bad.mkdir(exist_ok=True)
    blob = bytearray((root / "cifar-10-python.tar.gz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (bad / "cifar-10-python.tar.gz").write_bytes(bytes(blob))
    out = tmp_path / "cifar10"
    with pytest.raises(fetch.DownloadError, match=r"cifar-10-python.tar.gz is corrupt or truncated: md5 "
                       rf"\w+, expected {cifar_files['tgz_md5']}.*nothing was written"):
        fetch.download_dataset("cifar10", out, mirror=url + "corrupt/")
    assert list(tmp_path.iterdir()) == []


def test_tensors_of_an_incomplete_download_say_what_is_missing(tmp_path):
    (tmp_path / "cifar10").mkdir()
    with pytest.raises(ValueError, match=r"no complete cifar10 download .*python -m lesion data download"):
        data.make_tensors("cifar10", tmp_path / "cifar10", tmp_path / "a", tmp_path / "b",
                          test_fraction=0.25, seed=0)


# --- pretrained weights --------------------------------------------------------

WEIGHTS = "SqueezeNet1_1_Weights.IMAGENET1K_V1"  # the smallest catalogued network (5 MB)


@pytest.fixture(scope="module")
def squeezenet_pth(server):
    """A squeezenet1_1 state dict saved by torch.save, named NAME-<sha256 prefix>.pth."""
    root, _ = server
    torch.manual_seed(0)
    model = models.build("squeezenet1_1")
    blob = io.BytesIO()
    torch.save(model.state_dict(), blob)
    digest = hashlib.sha256(blob.getvalue()).hexdigest()
    path = root / f"squeezenet1_1-{digest[:8]}.pth"
    path.write_bytes(blob.getvalue())
    return path, model.state_dict()


@pytest.fixture
def squeezenet_url(monkeypatch, squeezenet_pth):
    entry = torchvision.models.get_weight(WEIGHTS)
    monkeypatch.setattr(entry.value, "url", f"https://download.pytorch.org/models/{squeezenet_pth[0].name}")
    return entry.url


def test_pretrained_weights_are_hash_checked_and_stored_as_safetensors(
        tmp_path, server, squeezenet_pth, squeezenet_url):
    pth = tmp_path / "resources" / f"{WEIGHTS}.pth"
    assert cli.main(["data", "download-weights", "--weights", WEIGHTS, "--out", str(pth),
                     "--mirror", server[1]]) == 0
    assert pth.read_bytes() == squeezenet_pth[0].read_bytes()
    out = tmp_path / "weights.safetensors"
    assert cli.main(["data", "pretrained", "--model", "squeezenet1_1", "--pth", str(pth),
                     "--out", str(out)]) == 0
    loaded = models.load_weights(out, num_classes=1000, input_shape=(3, 224, 224))
    for key, value in squeezenet_pth[1].items():
        assert torch.equal(loaded.state_dict()[key], value)
    meta = loaded.lesion_metadata
    assert meta["weights"] == WEIGHTS and meta["url"] == squeezenet_url
    assert meta["sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    assert "crop_size=[224]" in meta["transforms"]
    # images in [0, 1]: the network normalises them itself, as torchvision's preset does
    reference = torchvision.models.squeezenet1_1(num_classes=1000).eval()
    reference.load_state_dict(squeezenet_pth[1])
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    preset = torchvision.models.get_weight(WEIGHTS).transforms()
    with torch.no_grad():
        expected = reference(torchvision.transforms.functional.normalize(x, preset.mean, preset.std))
        torch.testing.assert_close(loaded(x), expected)
    assert _leftovers(pth.parent) == [] and _leftovers(tmp_path) == []


def test_weights_whose_hash_does_not_match_their_name_are_refused(
        tmp_path, server, squeezenet_pth, squeezenet_url):
    root, url = server
    bad = root / "truncated"
    bad.mkdir(exist_ok=True)
    (bad / squeezenet_pth[0].name).write_bytes(squeezenet_pth[0].read_bytes()[:1000])
    out = tmp_path / "w.pth"
    with pytest.raises(fetch.DownloadError, match=r"is corrupt or truncated: invalid hash value "
                       r"\(expected \"[0-9a-f]{8}\", got .*nothing was written"):
        fetch.download_weights(WEIGHTS, out, mirror=url + "truncated/")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_state_dict_is_refused_without_unpickling(tmp_path):
    pth = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, pth)  # a pickled module: weights_only refuses it
    with pytest.raises(ValueError, match=r"holds Python objects \(torch.nn.modules.linear.Linear\), "
                       "which lesion never unpickles") as refused:
        fetch.import_weights("squeezenet1_1", pth, tmp_path / "out.safetensors")
    assert "weights_only=False" not in str(refused.value)  # torch's advice: the unsafe path
    assert not (tmp_path / "out.safetensors").exists()


def test_catalogued_weights_exist_in_torchvision_and_share_one_preprocessing():
    assert set(catalog.PRETRAINED_WEIGHTS) == set(catalog.DATASET_MODELS["imagenet"])
    for model, name in catalog.PRETRAINED_WEIGHTS.items():
        entry = torchvision.models.get_weight(name)
        assert name.startswith(type(entry).__name__) and fetch.HASH_IN_NAME.search(entry.url), model
        assert len(entry.meta["categories"]) == data.get("imagenet").num_classes
    assert imagenet.transforms(list(catalog.PRETRAINED_WEIGHTS.values())).crop_size == [224]
    with pytest.raises(ValueError, match="transforms differ"):
        imagenet.transforms(["ResNet50_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V2"])


def test_every_dataset_and_model_of_the_catalog_is_in_the_registries():
    assert set(catalog.DATASET_SOURCES) == set(data.DATASETS) == set(catalog.DATASET_MODELS)
    for dataset, names in catalog.DATASET_MODELS.items():
        assert set(names) <= set(models.list_models()), dataset


# --- ImageNet ------------------------------------------------------------------


def _image_folder(root: Path, classes: int, per_class: int) -> list[Path]:
    paths = []
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = (int(rng.integers(230, 300)), int(rng.integers(230, 300)))
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            paths.append(folder / f"ILSVRC2012_val_{c * per_class + i:08d}.JPEG")
            Image.fromarray(pixels).save(paths[-1], format="JPEG")
    return paths


def test_missing_imagenet_says_what_to_fetch_from_where_and_where_to_put_it(tmp_path):
    for path in (None, tmp_path / "nowhere"):
        with pytest.raises(imagenet.MissingImagesError) as err:
            imagenet.list_images(path)
        text = str(err.value)
        assert "dataset.path" in text and "https://image-net.org" in text
        assert "ILSVRC2012_img_val.tar" in text and "ILSVRC2012_devkit_t12.tar.gz" in text
        assert "torchvision.datasets.ImageNet(" in text


def test_incomplete_imagenet_is_refused_with_counts(tmp_path):
    _image_folder(tmp_path, classes=2, per_class=2)
    with pytest.raises(imagenet.MissingImagesError, match="holds 2 class directories"):
        imagenet.list_images(tmp_path)
    with pytest.raises(imagenet.MissingImagesError, match="holds 4 images .* expected 5"):
        imagenet.list_images(tmp_path, classes=2, images=5)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(imagenet.MissingImagesError, match="1 loose images"):
        imagenet.list_images(flat)


def test_imagenet_is_decoded_once_as_the_weights_transforms_prescribe(tmp_path):
    paths = _image_folder(tmp_path / "val", classes=2, per_class=3)
    out = tmp_path / "test.safetensors"
    imagenet.decode(tmp_path / "val", out, weights=[WEIGHTS], workers=1, classes=2, images=6)
    stored = tensorfiles.load_tensors(out)
    assert stored["images"].dtype == torch.uint8 and stored["images"].shape == (6, 3, 224, 224)
    assert stored["labels"].tolist() == [0, 0, 0, 1, 1, 1]
    images, labels = data.load_split(out)
    preset = torchvision.models.get_weight(WEIGHTS).transforms()
    # in [0, 1]: the weights' mean and std run inside the network (fetch.import_weights)
    assert 0 <= images.min() and images.max() <= 1
    mean = torch.tensor(preset.mean).view(3, 1, 1)
    std = torch.tensor(preset.std).view(3, 1, 1)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            expected = preset(img.convert("RGB"))
        # the same uint8 pixels, scaled and normalised in another order: a few float32
        # roundings of values |x| <= 2.7 (6 U32 |x| <= 1e-6); a grey level is 0.017 there
        torch.testing.assert_close((images[i] - mean) / std, expected, rtol=0,
                                   atol=6 * tolerance.U32 * float(expected.abs().max()))


# --- the workflow builds its DAG for the real configs ----------------------------


def _dry_run(workdir: Path, config: dict) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "study.yaml").write_text(yaml.safe_dump(config))
    bindir = str(Path(sys.executable).parent)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(workdir / "study.yaml"), "--cores", "1"],
        env={**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]},
        capture_output=True, text=True, timeout=120, check=False)


def _config(name: str, **changes) -> dict:
    config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    return {**config, **changes}


def test_imagenet_dry_run_without_images_stops_with_the_instructions(tmp_path):
    proc = _dry_run(tmp_path, _config("imagenet", dataset={"name": "imagenet", "path": "nowhere"}))
    said = proc.stdout + proc.stderr  # Snakemake prints a WorkflowError to stdout
    assert proc.returncode != 0
    assert "dataset.path = 'nowhere': no such directory" in said
    assert "https://image-net.org" in said and "Traceback" not in said


def test_real_configs_plan_download_and_pretrained_jobs(tmp_path):
    mnist = _dry_run(tmp_path / "mnist", _config("mnist", mirror="http://127.0.0.1:9/m/"))
    assert mnist.returncode == 0, mnist.stderr[-3000:]
    assert "python -m lesion data download --dataset mnist --out resources/mnist/torchvision" \
           " --mirror http://127.0.0.1:9/m/" in mnist.stdout
    cifar = _dry_run(tmp_path / "cifar10", _config("cifar10"))
    assert cifar.returncode == 0, cifar.stderr[-3000:]
    assert "train --model resnet18_cifar --dataset cifar10" in cifar.stdout
    # A tensor cache that exists stands for the images: no ImageNet directory needed.
    workdir = tmp_path / "imagenet"
    tensorfiles.save_tensors({"images": torch.zeros(1, 3, 2, 2, dtype=torch.uint8)},
                           workdir / "results" / "imagenet" / "tensors" / "test.safetensors")
    config = _config("imagenet", models={"alexnet": {"layers": ["conv1"]}})
    proc = _dry_run(workdir, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("download-weights --weights AlexNet_Weights.IMAGENET1K_V1 "
            "--out resources/imagenet/weights/AlexNet_Weights.IMAGENET1K_V1.pth") in proc.stdout
    assert "pretrained --model alexnet" in proc.stdout and "train --model" not in proc.stdout
