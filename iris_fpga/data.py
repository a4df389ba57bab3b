"""The data step: a data set split into a training and a test part, scaled, with its names.

The data sets are scikit-learn's bundled ones (they ship with the package: no download) or a
user's CSV table (``iris_fpga.tabular``). Iris keeps the split the project always had (test part
0.2, ``random_state`` 42, not stratified), so the default build keeps its id; the others are split
stratified with the same fraction and state. Features are scaled with a StandardScaler fitted on
the training part, except digits' pixels (see ``PIXEL_DATASETS``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iris_fpga.config import BuildConfig
from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_save_npy, atomic_write_json

# File names inside the staging folder; the package step publishes them into package/.
DATA_FILES = ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy", "classes.npy", "scaler.json")
ARRAYS = ("X_train", "y_train", "X_test", "y_test", "classes")
# Digits' 64 features are pixels of one scale (0 to 16): a StandardScaler per pixel blows up the
# pixels that are nearly always 0 in training (a test value reaches |x| 53.6, beyond the IP input
# type's [-32, 32), and wraps). One mean (0) and one scale (the training part's largest pixel) for
# all of them keep every input in [0, 1], as an image is usually given to a network.
PIXEL_DATASETS = ("digits",)


@dataclass
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    features: list[str]


@dataclass(frozen=True)
class Samples:
    """A whole data set before the split: features, class labels (strings) and the names."""

    X: np.ndarray
    labels: np.ndarray
    features: list[str]
    stratify: bool = True


def bundled(name: str) -> Samples:
    """One of scikit-learn's bundled data sets, labels as its class names."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    names = np.asarray(bunch.target_names).astype(str)[bunch.target]
    return Samples(bunch.data.astype(np.float32), names, [str(f) for f in bunch.feature_names],
                   stratify=name != "iris")


def samples_of(config: BuildConfig) -> Samples:
    """The data the settings name: a bundled data set, or the CSV table (checked against its digest)."""
    if config.csv is None:
        return bundled(config.dataset)
    from iris_fpga import tabular

    table = tabular.read_table(Path(config.csv), config.target, config.test_size,
                               expected_sha256=config.csv_sha256)
    return Samples(table.X, table.labels, table.features)


def class_order(labels: np.ndarray) -> np.ndarray:
    """The classes, sorted: by number when every label is an integer (2 before 10), else as text."""
    unique = np.unique(labels)
    try:
        return np.asarray(sorted(unique, key=int), dtype=str)
    except ValueError:
        return unique.astype(str)


def load_split(config: BuildConfig) -> Split:
    """One-hot the labels, split, and scale with a scaler fitted on the training part."""
    from sklearn.model_selection import train_test_split

    samples = samples_of(config)
    classes = class_order(samples.labels)
    index = {name: i for i, name in enumerate(classes)}
    onehot = np.eye(len(classes), dtype=np.float32)[[index[label] for label in samples.labels]]
    X_train, X_test, y_train, y_test = train_test_split(
        samples.X, onehot, test_size=config.test_size, random_state=config.split_random_state,
        stratify=onehot.argmax(1) if samples.stratify else None,
    )
    X_train, X_test, mean, spread = scaling(config)(X_train, X_test)
    return Split(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, classes=classes,
                 scaler_mean=mean, scaler_scale=spread, features=samples.features)


def scaling(config: BuildConfig):
    """The data set's scaler: ``(X_train, X_test) -> (X_train, X_test, mean, scale)``, fitted on X_train."""
    return scale_pixels if config.dataset in PIXEL_DATASETS else scale_features


def scale_features(X_train: np.ndarray, X_test: np.ndarray):
    """A StandardScaler per feature, fitted on the training part (a constant feature keeps scale 1)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    return (_float32(scaler.transform(X_train)), _float32(scaler.transform(X_test)),
            scaler.mean_, scaler.scale_)


def scale_pixels(X_train: np.ndarray, X_test: np.ndarray):
    """One scale for all features: mean 0, scale the training part's largest value (pixels to [0, 1])."""
    n = X_train.shape[1]
    mean, spread = np.zeros(n), np.full(n, float(np.max(X_train)) or 1.0)
    return _float32(X_train / spread), _float32(X_test / spread), mean, spread


def _float32(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)


def save_split(split: Split, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        atomic_save_npy(folder / f"{name}.npy", getattr(split, name))
    atomic_write_json(
        folder / "scaler.json",
        {
            "mean": split.scaler_mean.tolist(),
            "scale": split.scaler_scale.tolist(),
            "features": list(split.features),
            "usage": "x_scaled = (x - mean) / scale, per feature, before on_target.py",
        },
    )
    return [folder / name for name in DATA_FILES]


def load_saved(folder: Path) -> Split:
    scaler = json.loads((folder / "scaler.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
    return Split(**arrays, scaler_mean=np.asarray(scaler["mean"]), scaler_scale=np.asarray(scaler["scale"]),
                 features=list(scaler["features"]))


def description(config: BuildConfig, split: Split) -> dict:
    """manifest.json's ``dataset``: its name (``csv`` for a table, with the file's sha256), features, classes."""
    record = {"name": config.dataset}
    if config.csv is not None:
        record.update(sha256=config.csv_sha256, target=config.target)
    return {**record, "features": list(split.features), "classes": split.classes.tolist()}


def with_csv_digest(config: BuildConfig) -> BuildConfig:
    """The settings with the CSV table's sha256, read and checked now, before any folder is made: a
    bad table is refused before anything is written, and the data step's cache key follows the
    table's contents, not only its path."""
    if config.csv is None:
        return config
    from iris_fpga import tabular

    table = tabular.read_table(Path(config.csv), config.target, config.test_size)
    return dataclasses.replace(config, csv_sha256=table.sha256).validated()


#: random_state of the stratified folds: fixed, so that fold I of K is the same samples in every build.
FOLD_RANDOM_STATE = 0


def fold_split(split: Split, fold: int, folds: int, scale=None) -> Split:
    """Fold ``fold`` (1 to ``folds``) of the training part held out in place of the test set.

    The folds are scikit-learn's StratifiedKFold(folds, shuffle=True, random_state=FOLD_RANDOM_STATE)
    over the training part. The scaler (``scale``: the data set's, see ``scaling``; a StandardScaler per
    feature if not given) is fitted again on what remains for training, so the held-out fold is scaled
    as unseen data is; the test set takes no part at all.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = split.y_train.argmax(1)
    fewest = int(np.bincount(labels).min())
    if folds > fewest:
        raise ToolError(f"--cv-fold {fold}/{folds}: the training part has only {fewest} samples of one class, so "
                        f"it splits into at most {fewest} stratified folds: choose K <= {fewest}")
    raw = split.X_train.astype(np.float64) * split.scaler_scale + split.scaler_mean
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=FOLD_RANDOM_STATE)
    train, held_out = list(splitter.split(raw, labels))[fold - 1]
    X_train, X_test, mean, spread = (scale or scale_features)(raw[train], raw[held_out])
    return Split(X_train=X_train, y_train=split.y_train[train], X_test=X_test, y_test=split.y_train[held_out],
                 classes=split.classes, scaler_mean=mean, scaler_scale=spread, features=split.features)
