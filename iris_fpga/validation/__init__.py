"""Does the hardware compute what the software computes, and how good is the model?

Reads a package/ folder (see shared interfaces: ``X_test.npy``, ``y_test.npy``, ``classes.npy``,
``y_keras.npy``, ``y_hls.npy``, optional ``y_hw.npy`` + ``y_hw.json``, ``manifest.json``, optional
``hardware_estimate.json``) and turns it into a report. Only numpy is imported here (matplotlib
only inside :func:`write_plots`), so validation takes a fraction of a second.

Verdict policy (what makes exit code 1):

* hardware vs C-simulation classes must agree on every sample;
* hardware vs C-simulation probabilities: the largest absolute difference must not exceed
  ``tolerance`` (default :data:`DEFAULT_TOLERANCE`). This is a *failure*, not a warning: the FPGA
  runs the design that the C-simulation models bit for bit, and both return float32 values that
  hold every ap_fixed output exactly, so any difference beyond float32 noise means a different
  design, a broken transfer or a driver bug. In emulation it is 0 too: for an ``hls`` package the
  same C-simulation library computes both, for ``rtl`` the Verilated IP, bit-exact with it.
* every source present (Keras, C-sim, hardware) must reach ``min_accuracy``;
* ``y_hw.json``'s build id must equal ``manifest.json``'s. On a mismatch the hardware results are
  *not* compared at all (never a silent comparison of two different models).

Keras vs C-simulation is reported but never fails: inputs go through ap_fixed<16,6> and the
table-based softmax rows sum to 1.006-1.24, so probabilities legitimately differ by up to ~0.19.
A class disagreement there is a warning.

Unusable input raises :class:`~iris_fpga.errors.ToolError` with ``ExitCode.USAGE`` (exit 2) and a
one-line message naming the file and the pipeline step that makes it.

Every file is read through the bounded loaders of :mod:`iris_fpga.fileio`, and the listed ones
are checked against the manifest with :func:`iris_fpga.contract.verify` first (a link, FIFO or
folder in their place is refused); strings from files are printed escaped.

Modules: ``sources`` (the files and who makes them), ``records`` (the JSON files' fields),
``load`` (reading and checking the package folder), ``checks`` (the report and its verdict),
``text`` (the terminal report), ``plots`` (the figures), ``html`` (the ``--html`` page),
``destinations`` (where ``--plot`` and ``--html`` may write: never into the package), ``cli`` (the
command line of ``utilities/validate_model.py`` and ``iris-fpga-validate``).
"""
from iris_fpga.validation.checks import DEFAULT_TOLERANCE, Report, validate
from iris_fpga.validation.destinations import check_outputs
from iris_fpga.validation.load import PackageData, load_package
from iris_fpga.validation.html import package_profile, write_html
from iris_fpga.validation.plots import render_figures, write_plots
from iris_fpga.validation.text import format_report

__all__ = [
    "DEFAULT_TOLERANCE",
    "check_outputs",
    "PackageData",
    "Report",
    "format_report",
    "load_package",
    "package_profile",
    "render_figures",
    "validate",
    "write_html",
    "write_plots",
]
