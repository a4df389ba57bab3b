# Stand-in for `vivado -mode batch -source SCRIPT` in tests (no Vivado here): runs SCRIPT in tclsh
# with a stand-in for each Vivado command the rtl design script uses. Each checks its arguments and
# that the files, cells, pins and runs it names exist, and refuses what Vivado refuses; a command not
# defined here is an error, as is a Tcl error anywhere (exit 1 with an ERROR line, like Vivado).
# Without -nolog it also writes its output to vivado.log in the working folder (or -log FILE), as
# Vivado does (hls4ml reads no output: it runs `vivado -mode batch -source design.tcl`).
# Not modelled: synthesis, placement, timing analysis; the utilization report says it is a stand-in.
#
# What a Vivado installation differs in is set by environment variables:
#   STANDIN_VIVADO_VERSION      what `version -short` answers (default 2023.2). Generated block design
#                               files go under project_1.gen from 2020.2 on, under project_1.srcs before.
#   STANDIN_VIVADO_BOARD_PARTS  the installed board parts, a Tcl list (default the PYNQ-Z2's, as after
#                               the README's install step); empty: a stock Vivado, which ships none, so
#                               `set_property board_part` fails with [Board 49-71].
#   STANDIN_VIVADO_TIMING       the file `report_timing_summary -file` copies (default timing_met.rpt
#                               beside this script: a report in Vivado's format, met).
#   STANDIN_VIVADO_IMPL=fail    the implementation run fails and writes neither .bit nor .hwh.

proc setting {name default} {
    return [expr {[info exists ::env($name)] ? $::env($name) : $default}]
}
set vivado_version [setting STANDIN_VIVADO_VERSION 2023.2]
set known_boards [setting STANDIN_VIVADO_BOARD_PARTS {tul.com.tw:pynq-z2:part0:1.0}]
set timing_report [setting STANDIN_VIVADO_TIMING [file join [file dirname [file normalize [info script]]] timing_met.rpt]]
# Where generated block design files go: project_1.gen from Vivado 2020.2 on (UG994), project_1.srcs before.
lassign [split $vivado_version .] year release
set generated [expr {$year > 2020 || ($year == 2020 && $release >= 2) ? "gen" : "srcs"}]

rename unknown _tcl_unknown
proc unknown {args} {
    error "invalid command name \"[lindex $args 0]\" (not a Vivado command this stand-in knows)"
}

# Options of a command: `valued` take a value, `switches` do not; between min and max positionals.
proc opts {cmd arglist valued switches min max} {
    set result [dict create pos {}]
    for {set i 0} {$i < [llength $arglist]} {incr i} {
        set a [lindex $arglist $i]
        if {[string match -* $a]} {
            if {$a in $valued} {
                incr i
                if {$i >= [llength $arglist]} { error "$cmd: option $a needs a value" }
                dict set result $a [lindex $arglist $i]
            } elseif {$a in $switches} {
                dict set result $a 1
            } else {
                error "$cmd: unknown option $a"
            }
        } else {
            dict lappend result pos $a
        }
    }
    set n [llength [dict get $result pos]]
    if {$n < $min || $n > $max} { error "$cmd: expected $min to $max arguments, got $n: $arglist" }
    return $result
}

proc need {cmd opts names} {
    foreach name $names {
        if {![dict exists $opts $name]} { error "$cmd: $name is required" }
    }
}

proc nonempty {cmd what value} {
    if {$value eq ""} { error "$cmd: no $what given (an earlier get_* matched nothing)" }
    return $value
}

# The IP catalog: interface pins (name -> mode, or name -> {mode CONFIG-that-enables-it}), pins, CONFIG.
set catalog {
    xilinx.com:ip:processing_system7:5.5 {
        intf {M_AXI_GP0 master S_AXI_HP0 {slave PCW_USE_S_AXI_HP0} FIXED_IO external DDR external}
        pins {FCLK_CLK0 FCLK_RESET0_N}
        config {PCW_USE_S_AXI_HP0}
    }
    xilinx.com:ip:axi_dma:7.1 {
        intf {S_AXI_LITE slave M_AXI_MM2S master M_AXI_S2MM master M_AXIS_MM2S master S_AXIS_S2MM slave}
        pins {s_axi_lite_aclk m_axi_mm2s_aclk m_axi_s2mm_aclk axi_resetn}
        config {c_include_sg c_sg_length_width c_sg_include_stscntrl_strm c_m_axi_mm2s_data_width
                c_m_axis_mm2s_tdata_width c_mm2s_burst_size c_s_axis_s2mm_tdata_width
                c_s_axis_s2mm_data_width c_s2mm_burst_size c_s_axis_s2mm_tdata_width.VALUE_SRC}
    }
}
set known_parts {xc7z020clg400-1}
set project {}
set design {}
set cells [dict create]
set hier [dict create]
set connected {}
set clocked {}
set files {}
set runs [dict create synth_1 new impl_1 new]
set group_depth 0
set run_open 0
set top {}

proc version {args} {
    global vivado_version
    opts version $args {} {-short} 0 0
    return $vivado_version
}

proc get_board_parts {args} {
    global known_boards
    set o [opts get_board_parts $args {} {-quiet -latest_file_version} 0 1]
    set pattern [expr {[llength [dict get $o pos]] ? [lindex [dict get $o pos] 0] : "*"}]
    set found {}
    foreach part $known_boards { if {[string match $pattern $part]} { lappend found $part } }
    if {$found eq {} && ![dict exists $o -quiet]} { puts "WARNING: \[Vivado 12-1023\] No board parts matched '$pattern'" }
    return $found
}

proc current_fileset {args} { opts current_fileset $args {} {} 0 0; return sources_1 }

proc update_compile_order {args} {
    global project
    set o [opts update_compile_order $args {-fileset} {} 0 0]
    if {$project eq {}} { error "update_compile_order: no open project" }
    if {[dict exists $o -fileset] && [dict get $o -fileset] ne "sources_1"} { error "update_compile_order: no fileset [dict get $o -fileset]" }
}

# The module a Verilog file of the project defines under `name`, or "".
proc module_file {name} {
    global files
    foreach f $files {
        if {[file extension $f] ni {.v .sv}} continue
        set fh [open $f]; set text [read $fh]; close $fh
        if {[regexp "\\mmodule\\s+$name\\M" $text]} { return $f }
    }
    return ""
}

proc get_property {args} {
    global cells
    lassign [dict get [opts get_property $args {} {} 2 2] pos] name object
    set object [nonempty get_property object $object]
    if {$name ne "VLNV" || ![dict exists $cells $object]} { error "get_property: this stand-in knows the VLNV of cells only, not $name of $object" }
    return [dict get $cells $object vlnv]
}

proc create_project {args} {
    global project known_parts
    set o [opts create_project $args {-part} {-force} 2 2]
    need create_project $o {-part}
    lassign [dict get $o pos] name dir
    if {[dict get $o -part] ni $known_parts} { error "create_project: unknown part [dict get $o -part]" }
    if {[file exists [file join $dir $name.xpr]] && ![dict exists $o -force]} {
        error "create_project: project $dir/$name exists (use -force)"
    }
    file mkdir $dir
    set fh [open [file join $dir $name.xpr] w]; puts $fh "stand-in project"; close $fh
    set project [dict create name $name dir $dir part [dict get $o -part]]
    return $name
}

proc current_project {args} {
    global project
    opts current_project $args {} {} 0 0
    if {$project eq {}} { error "current_project: no open project" }
    return [dict get $project name]
}

proc set_property {args} {
    global project cells known_boards catalog
    set o [opts set_property $args {-dict} {} 1 3]
    set pos [dict get $o pos]
    set object [nonempty set_property object [lindex $pos end]]
    if {[dict exists $o -dict]} {
        if {[llength $pos] != 1} { error "set_property: -dict takes one object" }
        set settings [dict get $o -dict]
    } else {
        if {[llength $pos] != 3} { error "set_property: expected NAME VALUE OBJECT" }
        set settings [list [lindex $pos 0] [lindex $pos 1]]
    }
    if {[llength $settings] % 2} { error "set_property: odd -dict list" }
    if {$project ne {} && $object eq [dict get $project name]} {
        dict for {key value} $settings {
            switch -- $key {
                board_part {
                    if {$value ni $known_boards} {
                        error "\[Board 49-71\] The board_part definition was not found for $value. The project's board_part property was not set, but the project's part property was set to [dict get $project part]. Valid board_part values can be retrieved with the 'get_board_parts' Tcl command."
                    }
                }
                ip_repo_paths {
                    if {![file isdirectory $value]} { puts "WARNING: \[IP_Flow 19-2248\] no IP repository at $value" }
                }
                default { error "set_property: unknown project property $key" }
            }
        }
        return
    }
    if {$object eq "sources_1"} {
        if {[dict keys $settings] ne "top"} { error "set_property: this stand-in sets only the top of sources_1" }
        if {[module_file [dict get $settings top]] eq ""} { error "set_property: no module [dict get $settings top] in the sources" }
        set ::top [dict get $settings top]
        return
    }
    if {![dict exists $cells $object]} { error "set_property: no object $object" }
    set known [dict get $catalog [dict get $cells $object vlnv] config]
    dict for {key value} $settings {
        if {![string match CONFIG.* $key] || [string range $key 7 end] ni $known} {
            error "set_property: $object has no property $key"
        }
        if {$value eq ""} { error "set_property: empty value for $key" }
        dict set cells $object config [string range $key 7 end] $value
    }
}

proc update_ip_catalog {args} { opts update_ip_catalog $args {} {} 0 0 }

proc create_bd_design {args} {
    global project design files
    set o [opts create_bd_design $args {} {} 1 1]
    if {$project eq {}} { error "create_bd_design: no open project" }
    set design [lindex [dict get $o pos] 0]
    set bd [file join [dict get $project dir] [dict get $project name].srcs sources_1 bd $design $design.bd]
    file mkdir [file dirname $bd]
    set fh [open $bd w]; puts $fh "{\"design\": \"$design\"}"; close $fh
    lappend files [file normalize $bd]
}

proc startgroup {args} { global group_depth; opts startgroup $args {} {} 0 0; incr group_depth }
proc endgroup {args} {
    global group_depth
    opts endgroup $args {} {} 0 0
    if {$group_depth == 0} { error "endgroup without startgroup" }
    incr group_depth -1
}

# Interfaces and pins of a Verilog module from its X_INTERFACE_INFO attributes; its top must be Verilog.
proc module_cell {top} {
    set f [module_file $top]
    if {$f eq ""} { error "create_bd_cell: no module $top in the project's sources" }
    if {[file extension $f] eq ".sv"} { error "create_bd_cell: $top is in SystemVerilog ($f); a module reference must be Verilog or VHDL" }
    set fh [open $f]; set text [read $fh]; close $fh
    set intf [dict create]; set pins {}
    set pattern {\(\*\s*X_INTERFACE_INFO\s*=\s*"(\S+)\s+(\S+)\s+(\S+)"\s*\*\)\s*(?:\(\*[^*]*\*\)\s*)*(input|output)}
    foreach {- vlnv name port direction} [regexp -all -inline $pattern $text] {
        if {[string match xilinx.com:interface:axis:* $vlnv]} {
            if {$port eq "TDATA"} { dict set intf $name [expr {$direction eq "input" ? "slave" : "master"}] }
        } elseif {[string match xilinx.com:signal:* $vlnv]} {
            lappend pins $name
        }
    }
    return [dict create vlnv xilinx.com:module_ref:$top:1.0 intf $intf pins $pins config {}]
}

proc create_bd_cell {args} {
    global design cells catalog
    set o [opts create_bd_cell $args {-type -vlnv -reference} {} 1 1]
    need create_bd_cell $o {-type}
    if {$design eq {}} { error "create_bd_cell: no block design" }
    set name [lindex [dict get $o pos] 0]
    if {[dict exists $cells $name]} { error "create_bd_cell: cell $name exists" }
    switch -- [dict get $o -type] {
        ip {
            need create_bd_cell $o {-vlnv}
            set vlnv [dict get $o -vlnv]
            if {![dict exists $catalog $vlnv]} { error "create_bd_cell: no IP $vlnv in the catalog" }
            dict set cells $name [dict merge [dict get $catalog $vlnv] [dict create vlnv $vlnv config {}]]
        }
        module {
            need create_bd_cell $o {-reference}
            dict set cells $name [module_cell [dict get $o -reference]]
        }
        default { error "create_bd_cell: unknown -type [dict get $o -type]" }
    }
    return /$name
}

proc cell_path {name} {
    global hier
    return [expr {[dict exists $hier $name] ? "[dict get $hier $name]/$name" : $name}]
}

proc get_bd_cells {args} {
    global cells
    set found {}
    foreach name [dict get [opts get_bd_cells $args {} {} 1 99] pos] {
        set leaf [lindex [split $name /] end]
        if {[dict exists $cells $leaf] && [cell_path $leaf] eq [string trimleft $name /]} {
            lappend found $leaf
        } else {
            puts "WARNING: \[BD 5-699\] No cells matched 'get_bd_cells $name'"
        }
    }
    return $found
}

# Mode of cell/intf ("" if absent): an interface enabled by a CONFIG exists only once it is set to 1.
proc intf_mode {cell intf} {
    global cells
    if {![dict exists $cells $cell intf $intf]} { return "" }
    lassign [dict get $cells $cell intf $intf] mode enabled_by
    if {$enabled_by ne "" && (![dict exists $cells $cell config $enabled_by]
                              || [dict get $cells $cell config $enabled_by] != 1)} { return "" }
    return $mode
}

proc get_bd_intf_pins {args} {
    set path [lindex [dict get [opts get_bd_intf_pins $args {} {} 1 1] pos] 0]
    lassign [split [string trimleft $path /] /] cell intf
    if {[cell_path $cell] ne $cell || [intf_mode $cell $intf] eq ""} {
        puts "WARNING: \[BD 5-699\] No interface pins matched 'get_bd_intf_pins $path'"
        return ""
    }
    return /$cell/$intf
}

proc get_bd_pins {args} {
    global cells
    set path [lindex [dict get [opts get_bd_pins $args {} {} 1 1] pos] 0]
    lassign [split [string trimleft $path /] /] cell pin
    if {![dict exists $cells $cell] || $pin ni [dict get $cells $cell pins]} {
        puts "WARNING: \[BD 5-699\] No pins matched 'get_bd_pins $path'"
        return ""
    }
    return /$cell/$pin
}

# "/cell/intf" or "/cell/pin (100 MHz)" named in an automation's -config must exist.
proc config_endpoint {cmd path} {
    lassign [split [string trimleft [lindex $path 0] /] /] cell name
    if {[intf_mode $cell $name] eq "" && [get_bd_pins $cell/$name] eq ""} { error "$cmd: no $path" }
    return $cell/$name
}

proc apply_bd_automation {args} {
    global cells connected clocked
    set o [opts apply_bd_automation $args {-rule -config} {} 1 1]
    need apply_bd_automation $o {-rule -config}
    set object [nonempty apply_bd_automation object [lindex [dict get $o pos] 0]]
    set config [dict get $o -config]
    switch -- [dict get $o -rule] {
        xilinx.com:bd_rule:processing_system7 {
            if {![dict exists $cells $object]} { error "apply_bd_automation: $object is not a cell" }
        }
        xilinx.com:bd_rule:axi4 {
            set master [config_endpoint apply_bd_automation [dict get $config Master]]
            set slave [config_endpoint apply_bd_automation [dict get $config Slave]]
            if {[string trimleft $object /] ni [list $master $slave]} { error "apply_bd_automation: $object is neither Master nor Slave" }
            set intc [dict get $config intc_ip]
            if {$intc eq "New AXI Interconnect"} {
                set intc [expr {[string match */S_AXI_HP0 $slave] ? "axi_mem_intercon" : "ps7_0_axi_periph"}]
                dict set cells $intc {vlnv xilinx.com:ip:axi_interconnect:2.1 intf {} pins {} config {}}
            } elseif {![dict exists $cells [string trimleft $intc /]]} {
                error "apply_bd_automation: no interconnect $intc"
            }
            lappend connected $master $slave
        }
        xilinx.com:bd_rule:clkrst {
            if {[dict get $config Freq] != 100} { error "apply_bd_automation: clock is [dict get $config Freq] MHz, the design's is 100" }
            config_endpoint apply_bd_automation [dict get $config Clk]
            lappend clocked [string trimleft $object /]
        }
        default { error "apply_bd_automation: unknown rule [dict get $o -rule]" }
    }
}

proc connect_bd_intf_net {args} {
    global connected
    lassign [dict get [opts connect_bd_intf_net $args {} {} 2 2] pos] a b
    set modes {}
    foreach end [list $a $b] {
        lassign [split [string trimleft [nonempty connect_bd_intf_net "interface pin" $end] /] /] cell intf
        lappend modes [intf_mode $cell $intf]
    }
    if {[lsort $modes] ne {master slave}} { error "connect_bd_intf_net: $a ([lindex $modes 0]) and $b ([lindex $modes 1]) are not a master and a slave" }
    lappend connected [string trimleft $a /] [string trimleft $b /]
}

proc group_bd_cells {args} {
    global hier
    set pos [dict get [opts group_bd_cells $args {} {} 2 99] pos]
    foreach cell [lrange $pos 1 end] { dict set hier [nonempty group_bd_cells cell $cell] [lindex $pos 0] }
}

proc get_files {args} {
    global files
    set path [file normalize [lindex [dict get [opts get_files $args {} {} 1 1] pos] 0]]
    if {$path ni $files} { puts "WARNING: \[Vivado 12-818\] No files matched '$path'"; return "" }
    return $path
}

# Before the wrapper: every interface and clock of a module reference must be connected.
proc validate_modules {} {
    global cells connected clocked
    dict for {name cell} $cells {
        if {![string match *:module_ref:* [dict get $cell vlnv]]} continue
        foreach intf [dict keys [dict get $cell intf]] {
            if {"$name/$intf" ni $connected} { error "make_wrapper: validation: $name/$intf is not connected" }
        }
        foreach pin [dict get $cell pins] {
            if {[string match *clk* $pin] && "$name/$pin" ni $clocked} { error "make_wrapper: validation: $name/$pin has no clock" }
        }
    }
}

proc make_wrapper {args} {
    global project design
    set o [opts make_wrapper $args {-files} {-top} 0 0]
    need make_wrapper $o {-files -top}
    nonempty make_wrapper "block design file" [dict get $o -files]
    validate_modules
    set hdl [file join [dict get $project dir] [dict get $project name].$::generated sources_1 bd $design hdl]
    file mkdir $hdl
    set fh [open [file join $hdl ${design}_wrapper.v] w]; puts $fh "module ${design}_wrapper(); endmodule"; close $fh
    return [file normalize [file join $hdl ${design}_wrapper.v]]
}

proc add_files {args} {
    global files project
    set o [opts add_files $args {} {-norecurse} 1 99]
    if {$project eq {}} { error "add_files: no open project" }
    foreach f [dict get $o pos] {
        if {![file isfile $f]} { error "add_files: \[filemgmt 56-197\] file does not exist: $f" }
        lappend files [file normalize $f]
    }
}

proc reset_run {args} {
    global runs
    set run [lindex [dict get [opts reset_run $args {} {} 1 1] pos] 0]
    if {![dict exists $runs $run]} { error "reset_run: no run $run" }
    dict set runs $run new
}

proc launch_runs {args} {
    global runs project design files
    set o [opts launch_runs $args {-to_step -jobs} {} 1 1]
    set run [lindex [dict get $o pos] 0]
    if {$run ne "impl_1"} { error "launch_runs: this stand-in runs impl_1 only, not $run" }
    if {[dict exists $o -to_step] && [dict get $o -to_step] ne "write_bitstream"} { error "launch_runs: unknown step [dict get $o -to_step]" }
    if {[dict exists $o -jobs] && ![string is integer -strict [dict get $o -jobs]]} { error "launch_runs: -jobs needs a number" }
    set wrapper [file normalize [file join [dict get $project dir] [dict get $project name].$::generated sources_1 bd $design hdl ${design}_wrapper.v]]
    if {$wrapper ni $files} { error "launch_runs: the block design's wrapper is not among the project's sources" }
    if {$::top ne "" && $::top ne "${design}_wrapper"} { error "launch_runs: the top is $::top, not the block design's wrapper" }
    set dir [dict get $project dir]
    set runs_dir [file join $dir [dict get $project name].runs $run]
    file mkdir $runs_dir
    set fh [open [file join $runs_dir runme.log] w]
    if {[info exists ::env(STANDIN_VIVADO_IMPL)] && $::env(STANDIN_VIVADO_IMPL) eq "fail"} {
        puts $fh "ERROR: \[Place 30-640\] Place Check: stand-in failure"; close $fh
        dict set runs $run failed
        return
    }
    puts $fh "stand-in implementation run"; close $fh
    set fh [open [file join $runs_dir ${design}_wrapper.bit] w]; puts -nonewline $fh "STAND-IN BIT"; close $fh
    set handoff [file join $dir [dict get $project name].$::generated sources_1 bd $design hw_handoff]
    file mkdir $handoff
    set fh [open [file join $handoff $design.hwh] w]; puts $fh "<STAND-IN-HWH/>"; close $fh
    dict set runs $run done
}

proc wait_on_run {args} {
    global runs
    set o [opts wait_on_run $args {-timeout} {} 1 1]
    set run [lindex [dict get $o pos] 0]
    if {![dict exists $runs $run] || [dict get $runs $run] eq "new"} { error "wait_on_run: run $run was not launched" }
}

proc open_run {args} {
    global runs run_open
    set run [lindex [dict get [opts open_run $args {} {} 1 1] pos] 0]
    if {![dict exists $runs $run] || [dict get $runs $run] ne "done"} { error "open_run: \[Common 17-69\] run $run did not complete" }
    set run_open 1
}

proc report {cmd arglist valued switches text} {
    global run_open
    set o [opts $cmd $arglist $valued $switches 0 0]
    need $cmd $o {-file}
    if {!$run_open} { error "$cmd: no open design" }
    set fh [open [dict get $o -file] w]; puts -nonewline $fh $text; close $fh
}
proc report_utilization {args} {
    report report_utilization $args {-file} {-hierarchical -hierarchical_percentages} \
        "report_utilization from the stand-in Vivado: no real figures\n"
}
proc report_timing_summary {args} {
    set fh [open $::timing_report]; set text [read $fh]; close $fh
    report report_timing_summary $args {-file} {} $text
}

set o [opts vivado $argv {-mode -source -log -journal} {-nolog -nojournal -notrace} 0 0]
need vivado $o {-mode -source}
# Vivado's own log: everything printed also goes to vivado.log (or -log FILE) unless -nolog.
if {![dict exists $o -nolog]} {
    set log_channel [open [expr {[dict exists $o -log] ? [dict get $o -log] : "vivado.log"}] w]
    rename puts _puts
    proc puts {args} {
        set nonewline [expr {[lindex $args 0] eq "-nonewline" ? "-nonewline" : ""}]
        set rest [expr {$nonewline eq "" ? $args : [lrange $args 1 end]}]
        if {[llength $rest] == 1 || [lindex $rest 0] eq "stdout"} {
            _puts {*}$nonewline $::log_channel [lindex $rest end]
            flush $::log_channel
        }
        _puts {*}$args
    }
}
if {[dict get $o -mode] ne "batch"} { puts "ERROR: this stand-in runs -mode batch only"; exit 1 }
puts "stand-in Vivado (tclsh [info patchlevel]): sourcing [dict get $o -source]"
if {[catch {uplevel #0 [list source [dict get $o -source]]} err]} {
    puts "ERROR: $err"
    exit 1
}
exit 0
