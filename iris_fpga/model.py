"""The train step: the QKeras network the settings describe, pruned with tensorflow-model-optimization."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from iris_fpga.config import BuildConfig
from iris_fpga.fileio import atomic_write_bytes
from iris_fpga.keras_compat import tf_keras

log = logging.getLogger(__name__)


def build_network(config: BuildConfig, n_features: int, n_classes: int):
    """QDense hidden widths, then n_classes, softmax: the article's 64-32-32-3 with 6 bits by default.

    Weights and biases are ``quantized_bits(weight_bits, 0, alpha=1)``, every hidden layer is
    followed by ``quantized_relu(activation_bits)``. Layers are made in the same order and with the
    same names for any depth, so the default draws the same initial weights as the article's code.
    """
    keras = tf_keras()
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    def qdense(units, name, **extra):
        return QDense(
            units,
            name=name,
            kernel_quantizer=quantized_bits(config.weight_bits, 0, alpha=1),
            bias_quantizer=quantized_bits(config.weight_bits, 0, alpha=1),
            kernel_initializer="lecun_uniform",
            kernel_regularizer=keras.regularizers.l1(1e-4),
            **extra,
        )

    *hidden_names, output_name = config.dense_layers
    model = keras.Sequential(name="iris")
    for i, (units, name) in enumerate(zip(config.hidden, hidden_names), start=1):
        model.add(qdense(units, name, **({"input_shape": (n_features,)} if i == 1 else {})))
        model.add(QActivation(activation=quantized_relu(config.activation_bits), name=f"relu{i}"))
    model.add(qdense(n_classes, output_name))
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
    model = build_network(config, X_train.shape[1], y_train.shape[1])
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
    """Fraction of zero kernel weights of each Dense layer (any depth) and overall, on the stripped model."""
    per_layer, zeros, total = {}, 0, 0
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:  # activations
            continue
        kernel = weights[0]
        per_layer[layer.name] = float(np.mean(kernel == 0))
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


def load_model(path: Path, config: BuildConfig, n_features: int, n_classes: int):
    model = build_network(config, n_features, n_classes)
    with np.load(path, allow_pickle=False) as saved:
        for layer in model.layers:
            count = len(layer.get_weights())
            if count:
                layer.set_weights([saved[f"{layer.name}/{i}"] for i in range(count)])
    return model
