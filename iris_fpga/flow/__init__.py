"""The build as data, in the shape of FINN's ``src/finn/builder``.

- ``context``: ``Step`` (one row of the table), ``Outcome`` (what a step returns) and ``Build``
  (what the steps share: settings, folders, results, inputs loaded on demand);
- ``steps``: one function per step and ``STEPS``, the table that declares them;
- ``records``: the build id and ``manifest.json``;
- ``checks``: what the steps check in what they made (finite weights, inputs the IP can hold);
- ``runner``: ``BuildModel``, which runs the table (reuse, ``--from``/``--to``, the summary);
- ``cli``: the command line (``python BuildModel.py``, ``iris-fpga-build``), its setting options
  made from ``BuildConfig``'s declarations.

``BuildModel.py`` is only the command users run. Adding a step means one function in ``steps``
and one ``Step(...)`` row in ``STEPS``; the runner, the cache keys, ``--from``/``--to``, the
package's file list and the summary follow the table. Adding a setting means one field of
``BuildConfig`` (``iris_fpga/config.py``) declared with ``setting(...)``, naming the steps whose
key it enters, and its use in a step.
"""
