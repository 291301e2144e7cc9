#!/usr/bin/env python3
"""Writes dashboards/storwatch.json, the storwatch Grafana dashboard (schemaVersion 39).

Plain Python 3, no packages: edit the panel list below and run `python3 dashboards/build.py`
(or give it another output path).
tests/dashboard.rs checks the result (PromQL parses, every metric exists in the agent, the
dashboard-linter rules) and that the committed JSON is what this script writes.
"""

import json
import pathlib
import sys

SEL = 'job=~"$job", instance=~"$instance"'
DEV = SEL + ', device=~"$device"'
DS = {"type": "prometheus", "uid": "${datasource}"}

panels = []
_next_id = [1]
_y = [0]
_x = [0]
_row_h = [0]


def _id():
    i = _next_id[0]
    _next_id[0] += 1
    return i


def row(title):
    if _x[0]:
        _y[0] += _row_h[0]
        _x[0] = 0
    panels.append(
        {"type": "row", "id": _id(), "title": title, "collapsed": False,
         "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y[0]}, "panels": []}
    )
    _y[0] += 1
    _row_h[0] = 0


def panel(kind, title, description, targets, unit, w=12, h=8, **extra):
    if _x[0] + w > 24:
        _y[0] += _row_h[0]
        _x[0] = 0
        _row_h[0] = 0
    refs = "ABCDEFGH"
    p = {
        "type": kind,
        "id": _id(),
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": _x[0], "y": _y[0]},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [],
    }
    for i, t in enumerate(targets):
        expr, legend = t[0], t[1]
        target = {"refId": refs[i], "datasource": DS, "expr": expr, "legendFormat": legend,
                  "editorMode": "code", "range": True}
        if kind in ("table", "stat", "bargauge", "gauge") or (len(t) > 2 and t[2] == "instant"):
            target.update({"range": False, "instant": True})
        if kind == "table":
            target["format"] = "table"
        if kind == "heatmap":
            # For a histogram: sum by (le) (increase(x_bucket[$__rate_interval])), legend {{le}}.
            target["format"] = "heatmap"
        p["targets"].append(target)
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "table":
        p["options"] = {"showHeader": True}
    if kind == "heatmap":
        p["options"] = {"calculate": False, "yAxis": {"unit": unit}, "cellGap": 1,
                        "color": {"mode": "scheme", "scheme": "Oranges"}}
    for k, v in extra.items():
        if k == "thresholds":
            p["fieldConfig"]["defaults"]["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": c, "value": val} for val, c in v],
            }
        elif k == "mappings":
            p["fieldConfig"]["defaults"]["mappings"] = v
        else:
            p[k] = v
    panels.append(p)
    _x[0] += w
    _row_h[0] = max(_row_h[0], h)


OK_MAPPING = [{"type": "value", "options": {"0": {"text": "FAIL", "color": "red"},
                                            "1": {"text": "ok", "color": "green"}}}]

# --- Health overview -------------------------------------------------------------------------
row("Health overview")
panel("stat", "Failing checks", "Subjects failing any storwatch check (storwatch_checks_failing summed).",
      [(f"sum(storwatch_checks_failing{{{SEL}}})", "failing")], "none", w=6, h=4,
      thresholds=[(None, "green"), (1, "red")])
panel("stat", "Collectors failing", "Collectors whose last run could not read their source.",
      [(f"count(storwatch_collector_success{{{SEL}}} == 0) or vector(0)", "failing")], "none", w=6, h=4,
      thresholds=[(None, "green"), (1, "red")])
panel("stat", "Devices", "Whole block devices storwatch reports.",
      [(f"count(storwatch_disk_info{{{SEL}}})", "devices")], "none", w=6, h=4)
panel("stat", "Recent kernel storage errors", "Subject and class pairs (disks and others) with a storage error in the kernel log in the last 15 minutes.",
      [(f"count(time() - storwatch_kernel_storage_last_error_timestamp_seconds{{{SEL}}} < 900 or time() - storwatch_kernel_subject_last_error_timestamp_seconds{{{SEL}}} < 900) or vector(0)", "errors")],
      "none", w=6, h=4, thresholds=[(None, "green"), (1, "red")])
panel("bargauge", "Failing subjects per check", "storwatch_checks_failing by check: 0 is compliant.",
      [(f"storwatch_checks_failing{{{SEL}}}", "{{check}}")], "none", w=12, h=8,
      thresholds=[(None, "green"), (1, "red")])
panel("table", "Device health", "The device checks (latency, kernel log errors, NVMe and SATA health, thermal) per subject.",
      [(f'storwatch_check_ok{{{SEL}, check=~"storage_latency|device_errors|nvme_health|sata_health|thermal"}}', "")],
      "none", w=12, h=8, mappings=OK_MAPPING)

# --- Latency ---------------------------------------------------------------------------------
row("Latency")
panel("timeseries", "Mean latency per operation", "await per operation over the agent's window (iostat r_await, w_await ...), and the storage_latency threshold.",
      [(f'storwatch_disk_await_seconds{{{DEV}}}', "{{device}} {{op}}"),
       (f'storwatch_check_threshold{{{SEL}, check="storage_latency", subject=~"$device"}}', "threshold {{subject}}")],
      "s")
panel("timeseries", "Mean latency from counters", "Read and write time over operations completed, over $__rate_interval.",
      [(f'rate(storwatch_disk_read_time_seconds_total{{{DEV}}}[$__rate_interval]) / rate(storwatch_disk_reads_completed_total{{{DEV}}}[$__rate_interval])', "{{device}} read"),
       (f'rate(storwatch_disk_write_time_seconds_total{{{DEV}}}[$__rate_interval]) / rate(storwatch_disk_writes_completed_total{{{DEV}}}[$__rate_interval])', "{{device}} write")],
      "s")
panel("timeseries", "p99 latency (eBPF)", "99th percentile of block I/O latency per device and operation, from the biolatency histograms (insert to completion), over $__rate_interval.",
      [(f'histogram_quantile(0.99, sum by (device, op, le) (rate(storwatch_disk_io_latency_seconds_bucket{{{DEV}}}[$__rate_interval])))', "{{device}} {{op}}")],
      "s")
panel("heatmap", "Latency distribution (eBPF)", "Block I/O completions per latency bucket, all selected devices and operations, from the biolatency histograms.",
      [(f'sum by (le) (increase(storwatch_disk_io_latency_seconds_bucket{{{DEV}}}[$__rate_interval]))', "{{le}}")],
      "s")

# --- IOPS and throughput ---------------------------------------------------------------------
row("IOPS and throughput")
panel("timeseries", "IOPS", "Operations completed per second, per device and operation.",
      [(f'storwatch_disk_operations_per_second{{{DEV}}}', "{{device}} {{op}}")], "iops")
panel("timeseries", "Throughput", "Bytes per second, per device and operation.",
      [(f'storwatch_disk_bytes_per_second{{{DEV}}}', "{{device}} {{op}}")], "Bps")

# --- Utilisation and queue -------------------------------------------------------------------
row("Utilisation and queue")
panel("timeseries", "Utilisation", "Share of the window each device was busy (%util).",
      [(f'storwatch_disk_utilization_ratio{{{DEV}}}', "{{device}}")], "percentunit", w=8)
panel("timeseries", "Queue depth", "Average requests in flight (aqu-sz) and the requests in flight now.",
      [(f'storwatch_disk_queue_depth{{{DEV}}}', "{{device}} avg"),
       (f'storwatch_disk_io_now{{{DEV}}}', "{{device}} now")], "short", w=8)
panel("timeseries", "Weighted I/O time", "I/O time weighted by requests in flight, per second (the counter form of aqu-sz).",
      [(f'rate(storwatch_disk_io_time_weighted_seconds_total{{{DEV}}}[$__rate_interval])', "{{device}}")],
      "short", w=8)

# --- Kernel errors ---------------------------------------------------------------------------
row("Kernel errors")
panel("timeseries", "Kernel storage errors by class", "Storage error lines in the kernel log per device and class.",
      [(f'sum by (device, class) (increase(storwatch_kernel_storage_errors_total{{{SEL}}}[$__rate_interval]))', "{{device}} {{class}}")],
      "short", w=12)
panel("table", "Last kernel error per device and class", "Seconds since the last error line of each class on each device.",
      [(f'time() - storwatch_kernel_storage_last_error_timestamp_seconds{{{SEL}}}', "")], "s", w=12)
panel("timeseries", "Kernel storage errors on other subjects", "Storage error lines about md arrays, dm devices, NFS servers, iSCSI sessions and ports or functions with no disk, per subject and class.",
      [(f'sum by (kind, subject, class) (increase(storwatch_kernel_subject_errors_total{{{SEL}}}[$__rate_interval]))', "{{kind}} {{subject}} {{class}}")],
      "short", w=12)
panel("table", "Last kernel error per other subject and class", "Seconds since the last error line of each class on each subject that is not a disk.",
      [(f'time() - storwatch_kernel_subject_last_error_timestamp_seconds{{{SEL}}}', "")], "s", w=12)
panel("timeseries", "Kernel log records lost", "Records overwritten before the agent read them (errors among them were not counted).",
      [(f'rate(storwatch_kernel_log_records_lost_total{{{SEL}}}[$__rate_interval])', "lost"),
       (f'rate(storwatch_kernel_log_records_total{{{SEL}}}[$__rate_interval])', "read")], "short", w=24, h=6)

# --- NVMe health -----------------------------------------------------------------------------
row("NVMe health")
panel("table", "NVMe critical warning bits", "Each bit of the SMART critical warning byte per controller (1: set).",
      [(f'storwatch_nvme_critical_warning_bit{{{SEL}}}', "")], "none", w=8)
panel("timeseries", "NVMe available spare", "Available spare and the drive's own threshold.",
      [(f'storwatch_nvme_available_spare_ratio{{{SEL}}}', "{{controller}} spare"),
       (f'storwatch_nvme_available_spare_threshold_ratio{{{SEL}}}', "{{controller}} threshold")],
      "percentunit", w=8)
panel("timeseries", "NVMe endurance used", "Percentage used of the rated endurance (may exceed 100 %).",
      [(f'storwatch_nvme_percentage_used_ratio{{{SEL}}}', "{{controller}}")], "percentunit", w=8)
panel("timeseries", "NVMe media errors and new error log entries", "Increase of the media error counter and of new Error Information log entries.",
      [(f'increase(storwatch_nvme_media_errors_total{{{SEL}}}[$__rate_interval])', "{{controller}} media"),
       (f'increase(storwatch_nvme_error_log_new_entries_total{{{SEL}}}[$__rate_interval])', "{{controller}} {{status_type}}")],
      "short", w=12)
panel("stat", "NVMe SMART readable", "1 when the agent read the controller's SMART log this interval (needs CAP_SYS_ADMIN).",
      [(f'storwatch_nvme_smart_available{{{SEL}}}', "{{controller}}")], "none", w=12,
      thresholds=[(None, "red"), (1, "green")])

# --- SATA health -----------------------------------------------------------------------------
# The failure-relevant attributes: the ones the sata_health check watches for rises (and the
# StorwatchSataDefectsRising / CrcErrorsRising alerts).
SATA_WATCHED = "5|10|175|176|181|182|183|184|187|188|196|197|198|199"
row("SATA health")
panel("stat", "SATA SMART status", "SMART RETURN STATUS per disk: passed, or FAILED (a threshold exceeded).",
      [(f'storwatch_sata_smart_passed{{{DEV}}}', "{{device}}")], "none", w=8, h=6,
      thresholds=[(None, "red"), (1, "green")],
      mappings=[{"type": "value", "options": {"0": {"text": "FAILED", "color": "red"},
                                              "1": {"text": "passed", "color": "green"}}}])
panel("table", "SATA SMART state", "Whether the agent read SMART this pass: available, standby (not woken), unsupported (no ATA device), denied (CAP_SYS_RAWIO missing), error.",
      [(f'storwatch_sata_smart_state{{{DEV}}} == 1', "")], "none", w=8, h=6)
panel("table", "SATA attributes at or below threshold", "Attributes per disk failing now (value <= threshold) and failed in the past (worst <= threshold).",
      [(f'sum by (device, when) (storwatch_sata_attribute_failing{{{DEV}}})', "")], "none", w=8, h=6)
panel("timeseries", "SATA failure-relevant attributes", "Decoded raw counts of the attributes whose rises mean failure: reallocated (5, 196), pending (197), offline-uncorrectable (198), reported-uncorrect (187), command timeouts (188), UDMA CRC (199), SSD program/erase failures...",
      [(f'storwatch_sata_attribute_decoded{{{DEV}, id=~"{SATA_WATCHED}"}}', "{{device}} {{id}} {{name}}")],
      "short", w=12)
panel("timeseries", "SATA temperatures", "Drive temperature per disk: SMART attribute 194 (else 190) and the drivetemp hwmon sensor.",
      [(f'storwatch_sata_temperature_celsius{{{DEV}}}', "{{device}} {{source}}")], "celsius", w=12)
panel("timeseries", "SATA I/O errors and timeouts", "Per second: SCSI commands completed with an error (ioerr_cnt, other SG_IO users' CHECK CONDITIONs included), the agent's own CHECK CONDITIONs among them, and commands timed out (iotmo_cnt).",
      [(f'rate(storwatch_sata_io_errors_total{{{DEV}}}[$__rate_interval])', "{{device}} errors"),
       (f'rate(storwatch_sata_agent_error_results_total{{{DEV}}}[$__rate_interval])', "{{device}} agent's own"),
       (f'rate(storwatch_sata_io_timeouts_total{{{DEV}}}[$__rate_interval])', "{{device}} timeouts")],
      "short", w=12)
panel("timeseries", "SATA link speed and speed-downs", "Negotiated link speed in bytes/s (6.0 Gbps is 750 MB/s) and the times libata lowered it.",
      [(f'storwatch_sata_link_speed_bytes_per_second{{{DEV}}}', "{{device}} speed"),
       (f'increase(storwatch_sata_link_speed_downs_total{{{DEV}}}[$__rate_interval])', "{{device}} speed-downs")],
      "Bps", w=12)

# --- Temperatures ----------------------------------------------------------------------------
row("Temperatures")
panel("timeseries", "Drive temperatures against their limits", "NVMe sensors, with each drive's warning (WCTEMP) and critical (CCTEMP) temperature.",
      [(f'storwatch_nvme_temperature_celsius{{{SEL}}}', "{{controller}} {{sensor}}"),
       (f'storwatch_nvme_warning_temperature_celsius{{{SEL}}}', "{{controller}} warning"),
       (f'storwatch_nvme_critical_temperature_celsius{{{SEL}}}', "{{controller}} critical")],
      "celsius", w=12)
panel("timeseries", "Thermal throttling", "Thermal-management transitions (TMT1/TMT2: the drive throttling itself) per interval.",
      [(f'increase(storwatch_nvme_thermal_management_transitions_total{{{SEL}}}[$__rate_interval])', "{{controller}} TMT{{level}}")],
      "short", w=12)
panel("timeseries", "Drive sensors against their own limit (hwmon)", "Each drive's hwmon temperature joined to its device (NVMe and drivetemp), with the drive's own warning threshold (temp1_max).",
      [(f'storwatch_device_temperature_celsius{{{DEV}}}', "{{device}}"),
       (f'storwatch_device_temperature_max_celsius{{{DEV}}}', "{{device}} limit")],
      "celsius", w=12)
panel("timeseries", "Throttling signal per drive", "storwatch_device_thermal_throttling: 1 while, within the thermal window, the drive's temperature warning bit was set or its temperature reached its own limit.",
      [(f'storwatch_device_thermal_throttling{{{DEV}}}', "{{device}}")],
      "none", w=12)

# --- Settings compliance ---------------------------------------------------------------------
row("Settings compliance")
panel("table", "Settings checks", "The settings checks per subject: I/O scheduler, writeback, kernel, resources.",
      [(f'storwatch_check_ok{{{SEL}, check=~"io_scheduler|writeback|kernel|resources"}}', "")],
      "none", w=8, mappings=OK_MAPPING)
panel("table", "I/O schedulers", "Active and available scheduler per device (non-rotational: mq-deadline or none).",
      [(f'storwatch_disk_scheduler_info{{{DEV}}}', "")], "none", w=8)
panel("table", "Writeback and resources", "vm.dirty_ratio, vm.dirty_background_ratio (spec: 15 % and 5 %), CPUs and memory.",
      [(f'storwatch_host_vm_dirty_ratio{{{SEL}}}', "dirty_ratio"),
       (f'storwatch_host_vm_dirty_background_ratio{{{SEL}}}', "dirty_background_ratio"),
       (f'storwatch_host_cpus{{{SEL}}}', "cpus"),
       (f'storwatch_host_memory_bytes{{{SEL}}}', "memory")],
      "none", w=8)

# --- Fabric ----------------------------------------------------------------------------------
row("Storage fabric")
panel("timeseries", "Target RTT", "Smoothed RTT of the connections to each storage target.",
      [(f'storwatch_fabric_target_rtt_seconds{{{SEL}}}', "{{target}}")], "s", w=8)
panel("timeseries", "Target retransmit ratio", "Retransmitted over sent segments per storage target over the window.",
      [(f'storwatch_fabric_target_retransmit_ratio{{{SEL}}}', "{{target}}")], "percentunit", w=8)
panel("timeseries", "Probe loss and success", "Connect probes to the configured targets.",
      [(f'storwatch_fabric_probe_loss_ratio{{{SEL}}}', "{{target}} loss"),
       (f'storwatch_fabric_probe_success{{{SEL}}}', "{{target}} success")], "percentunit", w=8)
panel("timeseries", "Interface loss ratio", "(errors + drops) / (packets + errors + drops) per fabric interface over the window.",
      [(f'storwatch_network_loss_ratio{{{SEL}}}', "{{interface}}")], "percentunit", w=8)
panel("timeseries", "Interface packets", "Packets per second through each fabric interface.",
      [(f'rate(storwatch_network_receive_packets_total{{{SEL}}}[$__rate_interval])', "{{interface}} rx"),
       (f'rate(storwatch_network_transmit_packets_total{{{SEL}}}[$__rate_interval])', "{{interface}} tx")],
      "pps", w=8)
panel("timeseries", "Link speed and carrier changes", "Link speed in bytes/s (10 Gb/s is 1.25 GB/s) and link up/down transitions.",
      [(f'storwatch_network_speed_bytes{{{SEL}}}', "{{interface}} speed"),
       (f'increase(storwatch_network_carrier_changes_total{{{SEL}}}[$__rate_interval])', "{{interface}} carrier changes")],
      "Bps", w=8)
panel("timeseries", "Host TCP retransmit ratio", "Retransmitted over sent segments, all host traffic.",
      [(f'storwatch_tcp_retransmit_ratio{{{SEL}}}', "retransmits")], "percentunit", w=12)
panel("timeseries", "NFS retransmit ratio", "RPC retransmissions per transmission of each NFS mount.",
      [(f'storwatch_nfs_retransmit_ratio{{{SEL}}}', "{{mountpoint}}")], "percentunit", w=12)

# --- Docker volumes --------------------------------------------------------------------------
row("Docker volumes")
panel("stat", "Docker engine", "1 when the engine answered the agent's last attempt.",
      [(f'storwatch_docker_up{{{SEL}}}', "up")], "none", w=6, h=6,
      thresholds=[(None, "red"), (1, "green")])
panel("table", "Engine", "Engine version, API and storage driver.",
      [(f'storwatch_docker_engine_info{{{SEL}}}', "")], "none", w=18, h=6)
panel("timeseries", "Space available", "Available over size of the filesystem holding the data root and each local volume.",
      [(f'storwatch_docker_filesystem_avail_bytes{{{SEL}}} / storwatch_docker_filesystem_size_bytes{{{SEL}}}', "{{path}}")],
      "percentunit", w=12)
panel("table", "Volume filesystems", "Filesystem type, mount point and source under each path (xfs or ext4 expected).",
      [(f'storwatch_docker_filesystem_info{{{SEL}}}', "")], "none", w=12)
panel("table", "Volumes and their containers", "Containers mounting each volume (0: dangling).",
      [(f'storwatch_docker_volume_containers{{{SEL}}}', "")], "none", w=12)
panel("table", "Container mounts", "Each mount of each container: read-only ones (RW=false) make writes fail.",
      [(f'storwatch_docker_container_mount_writable{{{SEL}}}', "")], "none", w=12,
      mappings=[{"type": "value", "options": {"0": {"text": "read-only", "color": "red"},
                                              "1": {"text": "read-write", "color": "green"}}}])

# --- storwatch itself ------------------------------------------------------------------------
row("storwatch")
panel("table", "Collectors", "1 when the collector's last run read its source.",
      [(f'storwatch_collector_success{{{SEL}}}', "")], "none", w=12, mappings=OK_MAPPING)
panel("timeseries", "Collector errors", "Errors by collector and kind (partial failures included).",
      [(f'sum by (collector, kind) (increase(storwatch_collector_errors_total{{{SEL}}}[$__rate_interval]))', "{{collector}} {{kind}}")],
      "short", w=12)


def variable_query(name, label, query, multi):
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }


dashboard = {
    "title": "storwatch",
    "uid": "storwatch-overview",
    "description": "Storage health of hosts running storwatch: checks, latency, IOPS, errors, NVMe, SATA, temperatures, settings, fabric and Docker volumes.",
    "tags": ["storwatch", "storage"],
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "graphTooltip": 1,
    "timezone": "utc",
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "annotations": {"list": []},
    "links": [],
    "templating": {
        "list": [
            {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
             "current": {}, "hide": 0, "options": [], "refresh": 1, "regex": ""},
            variable_query("job", "Job", "label_values(storwatch_build_info, job)", False),
            variable_query("instance", "Instance", 'label_values(storwatch_build_info{job=~"$job"}, instance)', False),
            variable_query("device", "Device", 'label_values(storwatch_disk_info{job=~"$job", instance=~"$instance"}, device)', True),
        ]
    },
    "panels": panels,
}

out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("storwatch.json")
out.write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")
