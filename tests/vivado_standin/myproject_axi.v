// Stand-in for the IP's top module in tests: hls4ml's myproject_axi ports with the interface
// attributes Vivado reads from a module reference. A one-word register slice passes each input
// word (and its TLAST) to the output; it is not the network.
`timescale 1ns / 1ps
module myproject_axi (
    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK" *)
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF in_r:out_r, ASSOCIATED_RESET ap_rst_n" *)
    input wire ap_clk,
    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 ap_rst_n RST" *)
    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)
    input wire ap_rst_n,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 in_r TDATA" *)
    input wire [31:0] in_r_TDATA,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 in_r TVALID" *)
    input wire in_r_TVALID,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 in_r TREADY" *)
    output wire in_r_TREADY,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 in_r TLAST" *)
    input wire in_r_TLAST,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 out_r TDATA" *)
    output reg [31:0] out_r_TDATA,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 out_r TVALID" *)
    output reg out_r_TVALID,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 out_r TREADY" *)
    input wire out_r_TREADY,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 out_r TLAST" *)
    output reg out_r_TLAST
);
    assign in_r_TREADY = !out_r_TVALID || out_r_TREADY;

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            out_r_TVALID <= 1'b0;
            out_r_TDATA <= 32'd0;
            out_r_TLAST <= 1'b0;
        end else if (in_r_TREADY) begin
            out_r_TVALID <= in_r_TVALID;
            out_r_TDATA <= in_r_TDATA;
            out_r_TLAST <= in_r_TLAST;
        end
    end
endmodule
