"""The design-space explorer (``utilities/explore.py``): which network is the cheapest that still classifies.

``space``: the points (BuildModel.py settings) and their check; ``task``: one build on a Dask
worker; ``synthesis``: a front fold's yosys figures, synthesized, not verified; ``front``:
cross-validated scores, the accuracy/LUT Pareto front and the rule that picks the winner;
``outputs``: results.json, the table, the plot; ``runner``: the sweep on a Dask cluster; ``cli``:
the command line.
"""
