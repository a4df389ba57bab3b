"""iris-on-fpga: train a pruned, quantized Iris network, turn it into PYNQ-Z2 hardware with
hls4ml, and prove that the hardware computes what the software computes."""
