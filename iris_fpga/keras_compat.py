"""The one place that reconciles TensorFlow 2.16+ (Keras 3) with QKeras and hls4ml.

QKeras and tensorflow-model-optimization need Keras 2, which TensorFlow >= 2.16 ships
separately as ``tf_keras``; ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first
imported. hls4ml 1.3 picks its Keras-3 parser whenever ``import keras`` yields Keras 3 and then
fails on a tf_keras model, so ``keras`` must resolve to ``tf_keras`` while it parses the model.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tf_keras():
    """Import and return tf_keras (Keras 2), after the legacy switch is set."""
    import tf_keras as keras2  # noqa: PLC0415 - heavy import, only when a step needs it

    return keras2


@contextlib.contextmanager
def keras_is_tf_keras():
    """Within the block, ``import keras`` gives tf_keras, so hls4ml takes its Keras 2 parser."""
    keras2 = tf_keras()
    saved = sys.modules.get("keras")
    sys.modules["keras"] = keras2
    try:
        with warnings.catch_warnings():
            # hls4ml serializes QKeras quantizers as if they were Keras constraints, harmlessly.
            warnings.filterwarnings("ignore", message=".*keras.constraints.serialize")
            yield keras2
    finally:
        if saved is None:
            sys.modules.pop("keras", None)
        else:
            sys.modules["keras"] = saved
