"""QKeras' and tensorflow-model-optimization's layers traced as written (``keras_compat``): the same
training, bit for bit, as with autograph's source rewrite, which took over half of a build's training.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import PYTHON, REPO, run_buildmodel

#: BuildModel.py with autograph rewriting every library again, as TensorFlow does by default.
REWRITTEN = """
import sys
from iris_fpga.keras_compat import TRACED_AS_WRITTEN, tf_keras
tf_keras()
from tensorflow.python.autograph.core import config
ours = [r for r in config.CONVERSION_RULES if getattr(r, "_prefix", None) in TRACED_AS_WRITTEN]
assert len(ours) == len(TRACED_AS_WRITTEN), config.CONVERSION_RULES  # the rules are in effect in a build
config.CONVERSION_RULES = tuple(r for r in config.CONVERSION_RULES if r not in ours)
from iris_fpga.flow.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("settings", [
    ("--hidden", "8,8", "--weight-bits", "3", "--activation-bits", "4", "--sparsity", "0.5", "--epochs", "20",
     "--seed", "1", "--cv-fold", "2/3"),
    ("--hidden", "16", "--weight-bits", "6", "--activation-bits", "5", "--sparsity", "0", "--epochs", "10"),
])
def test_layers_traced_as_written_train_the_same_weights_as_autograph(tmp_path, settings):
    steps = ("--to", "train", "--output-dir", "prj", "-q")
    for kind in ("as-written", "rewritten"):
        (tmp_path / kind).mkdir()
    as_written = run_buildmodel(*settings, *steps, cwd=tmp_path / "as-written")
    assert as_written.returncode == 0, as_written.stderr[-3000:]
    rewritten = subprocess.run([PYTHON, "-c", REWRITTEN, *settings, *steps], cwd=tmp_path / "rewritten",
                               env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                               timeout=600)
    assert rewritten.returncode == 0, rewritten.stderr[-3000:]
    weights = [(tmp_path / kind / "prj" / "pipeline" / "weights.npz").read_bytes()
               for kind in ("as-written", "rewritten")]
    assert weights[0] == weights[1]
