"""The one place that reconciles TensorFlow 2.16+ (Keras 3) with QKeras and hls4ml.

QKeras and tensorflow-model-optimization need Keras 2, which TensorFlow >= 2.16 ships
separately as ``tf_keras``; ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first
imported. hls4ml 1.3 picks its Keras-3 parser whenever ``import keras`` yields Keras 3 and then
fails on a tf_keras model, so ``keras`` must resolve to ``tf_keras`` while it parses the model.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Libraries whose layers TensorFlow traces as written, without autograph's source rewrite (see
#: ``_trace_as_written``).
TRACED_AS_WRITTEN = ("qkeras", "tensorflow_model_optimization")


def tf_keras():
    """Import and return tf_keras (Keras 2), after the legacy switch is set."""
    import tf_keras as keras2  # noqa: PLC0415 - heavy import, only when a step needs it

    _trace_as_written()
    return keras2


@functools.cache
def _trace_as_written() -> None:
    """Let tf.function trace QKeras' and tensorflow-model-optimization's layer code as written.

    autograph rewrites the Python source of every function a trace calls into graph-building code,
    once per function and process; for these two libraries that was over half of a default build's
    train step (README, "Figures"). Their layers are written with TensorFlow's own ops, so traced as
    written they give the same graph: a build trains bit-identical weights (same build id;
    tests/test_keras_compat.py). Were one of them to branch in Python on a tensor, its trace would
    raise, never compute something else. Uses autograph's own rule list, the one TensorFlow fills
    with its own modules; if that internal moves, training converts as before.
    """
    try:
        from tensorflow.python.autograph.core import config
        from tensorflow.python.autograph.core.config_lib import DoNotConvert
    except ImportError:
        logging.getLogger(__name__).debug("autograph's rules moved: layers are converted as before")
        return
    config.CONVERSION_RULES = (*(DoNotConvert(name) for name in TRACED_AS_WRITTEN), *config.CONVERSION_RULES)


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
