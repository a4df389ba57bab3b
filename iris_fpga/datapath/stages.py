"""Cut da4ml's datapath into register stages by carry chains, the xc7's real unit of logic delay.

da4ml's own cut (``to_pipeline`` on its latency model) counts an adder of any width as one delay and
a constant addition or a negation as none, though each is a carry chain in the fabric: measured with
yosys' ``sta`` on the default network, its "2.5 adder delays" stages held 3-4 carry chains and up to
5.7 ns of logic. Here every operation is given the depth the Verilog da4ml writes for it actually has
(``chain_depth``), and da4ml's own splitter cuts on that depth instead: at most ``cutoff`` chains in
a stage.
"""
from __future__ import annotations

#: Carry chains (an adder's LUT, its CARRY4s) per da4ml opcode: 0/1 a +- b << s, 4 a + constant,
#: 8 a table read; -2/-3 a ReLU/quantization of a negated value (the negation is a chain); 6 a
#: multiplexer on a sign bit (a LUT level, half a chain), -6 the same of a negated value.
OPCODE_CHAINS = {0: 1.0, 1: 1.0, 4: 1.0, 8: 1.0, -2: 1.0, -3: 1.0, 6: 0.5, -6: 1.5}
NO_PARENTS = (-1, 5)  # an input word, a constant


def chain_depths(comb) -> list[float]:
    """The carry chains on the longest path from the inputs to each of ``comb``'s operations."""
    depth: list[float] = []
    for op in comb.ops:
        if op.opcode in NO_PARENTS:
            depth.append(0.0)
            continue
        parents = [p for p in (op.id0, op.id1) if p >= 0]
        if op.opcode in (6, -6):
            parents.append(op.data & 0xFFFFFFFF)  # the sign bit's operation
        depth.append(max(depth[p] for p in parents) + _own_chains(op))
    return depth


def _own_chains(op) -> float:
    if op.opcode == -9:  # a bitwise NOT (0) or AND-reduction (2) of a negated value; 1: OR, no negation
        return 1.0 if op.data != 1 else 0.0
    if op.opcode == 10:  # a bitwise binary operation, each negated operand a chain before it
        return float(((op.data >> 32) & 1) or ((op.data >> 33) & 1))
    return OPCODE_CHAINS.get(op.opcode, 0.0)


def to_stages(comb, cutoff: float):
    """da4ml's ``Pipeline`` of ``comb`` with at most ``cutoff`` carry chains per register stage."""
    from da4ml.trace.pipeline import to_pipeline

    depths = chain_depths(comb)
    ops = [op._replace(latency=d) for op, d in zip(comb.ops, depths)]
    return to_pipeline(comb._replace(ops=ops), cutoff, retiming=False, verbose=False)
