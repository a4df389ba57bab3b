// The accelerator IP, Verilated, behind a plain C interface for the emulated board (ctypes).
//
// Built by iris_fpga.emulation.verilated_ip with `verilator --prefix Vip`; `ip_identity.h` (written beside this
// file at build time) defines IRIS_VERILOG_SHA256, the sha256 of the Verilog the model was built from.
// One handle is one IP with its own clock. Words go in through `in_r` as the AXI DMA's MM2S channel
// sends them (TLAST on the last word of a transfer) and come out of `out_r` as its S2MM channel takes
// them: the clock runs only inside ipemu_pull, with both sides active, as on the board once the driver
// has started both transfers. AXI-Stream rule kept on the source side: once TVALID is up it stays up,
// with the same word, until the IP takes it; pauses start only between words.
#include <cstdint>
#include <deque>

#include "Vip.h"
#include "ip_identity.h"
#include "verilated.h"

namespace {

struct Pauses {
    uint64_t state = 0;
    uint32_t per_65536 = 0;  // probability of a paused cycle, in 1/65536
    bool next() {            // splitmix64: small, seeded, the same on every computer
        if (per_65536 == 0) return false;
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        return (z & 0xFFFF) < per_65536;
    }
};

struct Emulator {
    VerilatedContext context;
    Vip* top;
    std::deque<uint64_t> queue;  // words the MM2S side still has to send: data | last << 32
    uint64_t cycles = 0;
    bool presenting = false;     // TVALID is up with queue.front()
    Pauses source, sink;

    Emulator() { top = new Vip{&context}; }
    ~Emulator() {
        top->final();
        delete top;
    }

    void tick() {  // one ap_clk period: settle at low, rising edge
        top->ap_clk = 0;
        top->eval();
        top->ap_clk = 1;
        top->eval();
        ++cycles;
    }
};

}  // namespace

extern "C" {

void* ipemu_create() { return new Emulator(); }

void ipemu_destroy(void* handle) { delete static_cast<Emulator*>(handle); }

const char* ipemu_verilog_sha256() { return IRIS_VERILOG_SHA256; }

// Reset the IP (ap_rst_n low for 4 cycles), drop unsent words, zero the cycle count.
void ipemu_reset(void* handle) {
    Emulator& e = *static_cast<Emulator*>(handle);
    e.queue.clear();
    e.presenting = false;
    e.top->in_r_TVALID = 0;
    e.top->out_r_TREADY = 0;
    e.top->ap_rst_n = 0;
    for (int i = 0; i < 4; ++i) e.tick();
    e.top->ap_rst_n = 1;
    e.tick();
    e.cycles = 0;
}

// Seeded random pauses: each cycle the source withholds its next word with probability in_per_65536
// (only between words), the sink drops TREADY with probability out_per_65536. Zero: never.
void ipemu_pauses(void* handle, uint64_t seed, uint32_t in_per_65536, uint32_t out_per_65536) {
    Emulator& e = *static_cast<Emulator*>(handle);
    e.source = Pauses{seed * 2 + 1, in_per_65536};
    e.sink = Pauses{seed * 2 + 2, out_per_65536};
}

// Queue n words for the input stream; last[i] != 0 sets TLAST with word i.
void ipemu_push(void* handle, const uint32_t* words, const uint8_t* last, uint64_t n) {
    Emulator& e = *static_cast<Emulator*>(handle);
    for (uint64_t i = 0; i < n; ++i) e.queue.push_back(words[i] | (uint64_t(last[i] != 0) << 32));
}

// Words queued by ipemu_push that the IP has not taken yet.
uint64_t ipemu_pending(void* handle) { return static_cast<Emulator*>(handle)->queue.size(); }

// Run the clock, feeding queued words and taking output words into words/last, until a word with
// TLAST is taken, max_words are taken, or idle_cap cycles in a row pass in which no word moves on
// either stream (the cycle cap: an IP that never completes ends here, as a board's DMA would time
// out). Returns the number of words taken.
uint64_t ipemu_pull(void* handle, uint32_t* words, uint8_t* last, uint64_t max_words, uint64_t idle_cap) {
    Emulator& e = *static_cast<Emulator*>(handle);
    Vip& t = *e.top;
    uint64_t taken = 0, idle = 0;
    while (taken < max_words && idle < idle_cap) {
        if (!e.presenting && !e.queue.empty() && !e.source.next()) e.presenting = true;
        t.in_r_TVALID = e.presenting;
        if (e.presenting) {
            t.in_r_TDATA = uint32_t(e.queue.front());
            t.in_r_TLAST = uint8_t(e.queue.front() >> 32);
        }
        t.out_r_TREADY = !e.sink.next();
        t.ap_clk = 0;
        t.eval();  // the handshakes of this cycle, as the rising edge will see them
        const bool in_fire = e.presenting && t.in_r_TREADY;
        const bool out_fire = t.out_r_TVALID && t.out_r_TREADY;
        const uint32_t data = t.out_r_TDATA;
        const bool tlast = t.out_r_TLAST;
        t.ap_clk = 1;
        t.eval();
        ++e.cycles;
        idle = (in_fire || out_fire) ? 0 : idle + 1;
        if (in_fire) {
            e.queue.pop_front();
            e.presenting = false;
        }
        if (out_fire) {
            words[taken] = data;
            last[taken] = tlast;
            ++taken;
            if (tlast) break;
        }
    }
    t.out_r_TREADY = 0;
    t.in_r_TVALID = 0;  // the clock stops here; TVALID goes up again with the same word next time
    return taken;
}

// Clock cycles since the last reset.
uint64_t ipemu_cycles(void* handle) { return static_cast<Emulator*>(handle)->cycles; }

}  // extern "C"
