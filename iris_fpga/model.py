"""The train step: the article's QKeras network, pruned with tensorflow-model-optimization."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from iris_fpga.config import DENSE_LAYERS, BuildConfig
from iris_fpga.fileio import atomic_write_bytes
from iris_fpga.keras_compat import tf_keras

log = logging.getLogger(__name__)

HIDDEN_UNITS = (64, 32, 32)
QUANTIZER_BITS = 6


def build_network(n_features: int, n_classes: int):
    """QDense 64-32-32-n_classes with 6-bit weights and biases, quantized ReLU, softmax."""
    keras = tf_keras()
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    def qdense(units, name, **extra):
        return QDense(
            units,
            name=name,
            kernel_quantizer=quantized_bits(QUANTIZER_BITS, 0, alpha=1),
            bias_quantizer=quantized_bits(QUANTIZER_BITS, 0, alpha=1),
            kernel_initializer="lecun_uniform",
            kernel_regularizer=keras.regularizers.l1(1e-4),
            **extra,
        )

    model = keras.Sequential(name="iris")
    model.add(qdense(HIDDEN_UNITS[0], DENSE_LAYERS[0], input_shape=(n_features,)))
    model.add(QActivation(activation=quantized_relu(QUANTIZER_BITS), name="relu1"))
    for i, units in enumerate(HIDDEN_UNITS[1:], start=2):
        model.add(qdense(units, DENSE_LAYERS[i - 1]))
        model.add(QActivation(activation=quantized_relu(QUANTIZER_BITS), name=f"relu{i}"))
    model.add(qdense(n_classes, DENSE_LAYERS[-1]))
    model.add(keras.layers.Activation(activation="softmax", name="softmax"))
    return model


def train(config: BuildConfig, X_train: np.ndarray, y_train: np.ndarray):
    """Train with pruning, strip the pruning wrappers and return the plain quantized model."""
    keras = tf_keras()
    import tensorflow as tf
    from tensorflow_model_optimization.sparsity.keras import (
        ConstantSparsity,
        UpdatePruningStep,
        prune_low_magnitude,
        strip_pruning,
    )

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_network(X_train.shape[1], y_train.shape[1])
    schedule = ConstantSparsity(
        config.sparsity, begin_step=config.pruning_begin_step, frequency=config.pruning_frequency
    )
    model = prune_low_magnitude(model, pruning_schedule=schedule)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.lr),
        loss=["categorical_crossentropy"],
        metrics=["accuracy"],
    )
    history = model.fit(
        X_train,
        y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_split=config.validation_split,
        shuffle=True,
        callbacks=[UpdatePruningStep()],
        verbose=2,
    )
    steps = int(np.ceil(len(X_train) * (1 - config.validation_split) / config.batch_size)) * config.epochs
    if steps <= config.pruning_begin_step:
        log.warning(
            "pruning never started: training ran %d steps, the schedule begins at step %d",
            steps,
            config.pruning_begin_step,
        )
    return strip_pruning(model), history.history


def measure_sparsity(model) -> dict:
    """Fraction of zero kernel weights of each Dense layer and overall, on the stripped model."""
    per_layer, zeros, total = {}, 0, 0
    for name in DENSE_LAYERS:
        kernel = model.get_layer(name).get_weights()[0]
        per_layer[name] = float(np.mean(kernel == 0))
        zeros += int(np.sum(kernel == 0))
        total += kernel.size
    return {"overall": zeros / total, "per_layer": per_layer}


def save_weights(model, path: Path) -> None:
    """All weights in one .npz (layer/index keys): the exact trained state, and the build id's input."""
    arrays = {}
    for layer in model.layers:
        for i, w in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{i}"] = w
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_model(path: Path, n_features: int, n_classes: int):
    model = build_network(n_features, n_classes)
    with np.load(path, allow_pickle=False) as saved:
        for layer in model.layers:
            count = len(layer.get_weights())
            if count:
                layer.set_weights([saved[f"{layer.name}/{i}"] for i in range(count)])
    return model
