"""The data step: Iris from scikit-learn (it ships with the package: no download)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_save_npy, atomic_write_json

# File names inside the staging folder; the package step publishes them into package/.
DATA_FILES = ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy", "classes.npy", "scaler.json")


@dataclass
class IrisSplit:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray


def load_split(test_size: float, random_state: int) -> IrisSplit:
    """Label-encode, one-hot, split, and scale with a StandardScaler fitted on the training part."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    iris = load_iris()
    names = np.asarray(iris.target_names)[iris.target]
    encoder = LabelEncoder().fit(names)
    labels = encoder.transform(names)
    onehot = np.eye(len(encoder.classes_), dtype=np.float32)[labels]
    X_train, X_test, y_train, y_test = train_test_split(
        iris.data.astype(np.float32), onehot, test_size=test_size, random_state=random_state
    )
    scaler = StandardScaler().fit(X_train)
    return IrisSplit(
        X_train=np.ascontiguousarray(scaler.transform(X_train), dtype=np.float32),
        y_train=y_train,
        X_test=np.ascontiguousarray(scaler.transform(X_test), dtype=np.float32),
        y_test=y_test,
        classes=np.asarray(encoder.classes_, dtype=str),
        scaler_mean=scaler.mean_,
        scaler_scale=scaler.scale_,
    )


def save_split(split: IrisSplit, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("X_train", "y_train", "X_test", "y_test", "classes"):
        atomic_save_npy(folder / f"{name}.npy", getattr(split, name))
    atomic_write_json(
        folder / "scaler.json",
        {
            "mean": split.scaler_mean.tolist(),
            "scale": split.scaler_scale.tolist(),
            "features": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
            "usage": "x_scaled = (x_cm - mean) / scale, per feature, before on_target.py",
        },
    )
    return [folder / name for name in DATA_FILES]


def load_saved(folder: Path) -> IrisSplit:
    scaler = json.loads((folder / "scaler.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ("X_train", "y_train", "X_test", "y_test", "classes")}
    return IrisSplit(**arrays, scaler_mean=np.asarray(scaler["mean"]), scaler_scale=np.asarray(scaler["scale"]))


#: random_state of the stratified folds: fixed, so that fold I of K is the same samples in every build.
FOLD_RANDOM_STATE = 0


def fold_split(split: IrisSplit, fold: int, folds: int) -> IrisSplit:
    """Fold ``fold`` (1 to ``folds``) of the training part held out in place of the test set.

    The folds are scikit-learn's StratifiedKFold(folds, shuffle=True, random_state=FOLD_RANDOM_STATE)
    over the training part. The scaler is fitted again on what remains for training, so the held-out
    fold is scaled as unseen data is; the test set takes no part at all.
    """
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    labels = split.y_train.argmax(1)
    fewest = int(np.bincount(labels).min())
    if folds > fewest:
        raise ToolError(f"--cv-fold {fold}/{folds}: the training part has only {fewest} samples of one class, so "
                        f"it splits into at most {fewest} stratified folds: choose K <= {fewest}")
    raw = split.X_train.astype(np.float64) * split.scaler_scale + split.scaler_mean
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=FOLD_RANDOM_STATE)
    train, held_out = list(splitter.split(raw, labels))[fold - 1]
    scaler = StandardScaler().fit(raw[train])
    return IrisSplit(
        X_train=np.ascontiguousarray(scaler.transform(raw[train]), dtype=np.float32),
        y_train=split.y_train[train],
        X_test=np.ascontiguousarray(scaler.transform(raw[held_out]), dtype=np.float32),
        y_test=split.y_train[held_out],
        classes=split.classes,
        scaler_mean=scaler.mean_,
        scaler_scale=scaler.scale_,
    )
