#!/usr/bin/env python3
"""The seed article's flow ("Building Neural Networks on FPGAs", /work/shared/seed/), as its code is,
for ``make bench`` to compare ``BuildModel.py`` with: train_model() and build_bitstream(), run in
the current folder (hls4ml_prj_pynq/, package/).

Changed only where today's stack needs it, each change marked ``# today's stack``:
- TensorFlow 2.21 ships Keras 3; QKeras and tensorflow-model-optimization need Keras 2, which is
  ``tf_keras`` with ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is imported;
- hls4ml 1.3 takes its Keras-3 parser whenever ``import keras`` gives Keras 3, so ``keras`` is
  ``tf_keras`` while it converts;
- Keras 2.11+ optimizers take ``learning_rate``, no longer ``lr``;
- without Vivado HLS on PATH, ``hls_model.build`` raises at once: the bitstream is skipped, as
  BuildModel.py's bitstream step skips it.
The data preparation is not in the article; this is the usual one, with the split BuildModel.py
uses for Iris (test part 0.2, random_state 42, StandardScaler, one-hot).
"""
import os
import shutil
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # today's stack
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras  # noqa: E402  today's stack: Keras 2
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from tf_keras.layers import Activation  # noqa: E402
from tf_keras.models import Sequential  # noqa: E402
from tf_keras.optimizers import Adam  # noqa: E402
from tf_keras.regularizers import l1  # noqa: E402
from tf_keras.utils import to_categorical  # noqa: E402
from qkeras import QActivation, QDense, quantized_bits, quantized_relu  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import prune, pruning_callbacks, pruning_schedule  # noqa: E402
from tensorflow_model_optimization.sparsity.keras import strip_pruning  # noqa: E402

import hls4ml  # noqa: E402


class BuildModel:
    def __init__(self):
        data = load_iris()
        X_train_val, X_test, y_train_val, y_test = train_test_split(data.data, data.target, test_size=0.2,
                                                                    random_state=42)
        scaler = StandardScaler().fit(X_train_val)
        self.X_train_val = scaler.transform(X_train_val).astype(np.float32)
        self.X_test = scaler.transform(X_test).astype(np.float32)
        self.y_train_val = to_categorical(y_train_val, 3)
        self.y_test = to_categorical(y_test, 3)
        os.makedirs("package", exist_ok=True)

    def train_model(self):
        self.model = Sequential()
        self.model.add(
            QDense(
                64,
                input_shape=(4,),
                name='fc1',
                kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1),
                kernel_initializer='lecun_uniform',
                kernel_regularizer=l1(0.0001),
            )
        )
        self.model.add(QActivation(activation=quantized_relu(6), name='relu1'))
        self.model.add(
            QDense(
                32,
                name='fc2',
                kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1),
                kernel_initializer='lecun_uniform',
                kernel_regularizer=l1(0.0001),
            )
        )
        self.model.add(QActivation(activation=quantized_relu(6), name='relu2'))
        self.model.add(
            QDense(
                32,
                name='fc3',
                kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1),
                kernel_initializer='lecun_uniform',
                kernel_regularizer=l1(0.0001),
            )
        )
        self.model.add(QActivation(activation=quantized_relu(6), name='relu3'))
        self.model.add(
            QDense(
                3,
                name='output',
                kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1),
                kernel_initializer='lecun_uniform',
                kernel_regularizer=l1(0.0001),
            )
        )
        self.model.add(Activation(activation='softmax', name='softmax'))
        pruning_params = {"pruning_schedule": pruning_schedule.ConstantSparsity(0.75, begin_step=2000, frequency=100)}
        self.model = prune.prune_low_magnitude(self.model, **pruning_params)
        adam = Adam(learning_rate=0.0001)  # today's stack: lr= is gone
        self.model.compile(optimizer=adam, loss=['categorical_crossentropy'], metrics=['accuracy'])
        callbacks = [
            pruning_callbacks.UpdatePruningStep(),
        ]
        self.model.fit(
            self.X_train_val,
            self.y_train_val,
            batch_size=32,
            epochs=30,
            validation_split=0.25,
            shuffle=True,
            callbacks=callbacks,
        )
        self.model = strip_pruning(self.model)

    def build_bitstream(self):
        saved_keras = sys.modules.get("keras")
        sys.modules["keras"] = tf_keras  # today's stack: hls4ml's Keras 2 parser
        try:
            config = hls4ml.utils.config_from_keras_model(self.model, granularity='name')
            config['LayerName']['softmax']['exp_table_t'] = 'ap_fixed<18,8>'
            config['LayerName']['softmax']['inv_table_t'] = 'ap_fixed<18,4>'
            for layer in ['fc1', 'fc2', 'fc3', 'output']:
                config['LayerName'][layer]['ReuseFactor'] = 512
            hls_model = hls4ml.converters.convert_from_keras_model(
                self.model, hls_config=config, output_dir='hls4ml_prj_pynq', backend='VivadoAccelerator',
                board='pynq-z2'
            )
            hls_model.compile()
        finally:
            sys.modules["keras"] = saved_keras
        y_hls = hls_model.predict(np.ascontiguousarray(self.X_test))
        np.save('package/y_hls.npy', y_hls)
        y_pred = self.model.predict(self.X_test)
        accuracy_original = accuracy_score(np.argmax(self.y_test, axis=1), np.argmax(y_pred, axis=1))
        accuracy_hls = accuracy_score(np.argmax(self.y_test, axis=1), np.argmax(y_hls, axis=1))
        print(f"Accuracy of the original pruned and quantized model: {accuracy_original * 100:.2f}%")
        print(f"Accuracy of the HLS model: {accuracy_hls * 100:.2f}%")
        if shutil.which("vivado_hls") is None:  # today's stack: no Vivado HLS here
            print("Vivado HLS not found: the bitstream is not built")
            return
        hls_model.build(csim=False, export=True, bitfile=True)


if __name__ == "__main__":
    flow = BuildModel()
    flow.train_model()
    flow.build_bitstream()
