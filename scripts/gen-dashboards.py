#!/usr/bin/env python3
"""Writes dashboards/tickcast.json and dashboards/loadgen.json (Grafana 10/11).

The dashboards are generated so that every panel follows the same rules
(datasource variable, unit, ids, layout); edit this file, run it, commit both.
    scripts/gen-dashboards.py
"""
import json, os

DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'node=~"$node"'
# process_* series have no node label: keep those of the selected nodes' instances.
OF_NODES = 'and on (instance, job) tickcast_ready{node=~"$node"}'


class Board:
    def __init__(self, uid, title, description, node_query=None):
        self.uid, self.title, self.description = uid, title, description
        self.panels, self.next_id, self.y, self.x = [], 1, 0, 0
        self.node_query = node_query

    def row(self, title):
        self._newline()
        self.panels.append({"id": self._id(), "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, targets, unit, kind="timeseries", width=8, description="", must_show_data=True, extra=None):
        if self.x + width > 24:
            self._newline()
        p = {
            "id": self._id(), "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [dict({"datasource": DS, "refId": chr(65 + i), "range": True}, **t) for i, t in enumerate(targets)],
            # Read by the tests: a panel that may legitimately be empty says so.
            "tickcast": {"mustShowData": must_show_data},
        }
        if extra:
            p.update(extra)
        self.panels.append(p)
        self.x += width

    def _newline(self):
        if self.x > 0:
            self.x, self.y = 0, self.y + 8

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def json(self):
        variables = [{"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
                      "current": {}, "hide": 0, "refresh": 1, "options": []}]
        if self.node_query:
            variables.append({"name": "node", "label": "Node", "type": "query", "datasource": DS,
                              "query": {"query": self.node_query, "refId": "node"}, "definition": self.node_query,
                              "includeAll": True, "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
                              "refresh": 2, "sort": 1, "hide": 0, "options": []})
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": ["tickcast"],
            "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1, "refresh": "5s",
            "time": {"from": "now-15m", "to": "now"}, "timezone": "", "annotations": {"list": []},
            "templating": {"list": variables}, "panels": self.panels,
        }


def q(expr, legend=""):
    return {"expr": expr, "legendFormat": legend}


def rate(metric, by="", selector=NODE):
    inner = f"rate({metric}{{{selector}}}[$__rate_interval])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantiles(hist):
    return [q(f'histogram_quantile({p}, sum by (le) (rate({hist}_bucket{{{NODE}}}[$__rate_interval])))', f"p{label}")
            for p, label in [(0.5, "50"), (0.99, "99"), (0.999, "99.9")]]


def tickcast():
    b = Board("tickcast", "tickcast", "One tickcast node or a cluster: traffic, throughput, latency, health.",
              node_query="label_values(tickcast_connections, node)")
    b.row("Traffic")
    b.panel("Connections", [q(f"sum by (node) (tickcast_connections{{{NODE}}})", "{{node}}")], "short")
    b.panel("Subscriptions", [q(f"sum by (node) (tickcast_subscriptions{{{NODE}}})", "{{node}}")], "short")
    b.panel("Upgrades by result", [q(rate("tickcast_connections_total", "result"), "{{result}}")], "ops")
    b.panel("Disconnects by reason", [q(rate("tickcast_disconnects_total", "reason"), "{{reason}}")], "ops", width=24)
    b.row("Throughput")
    b.panel("Feed ticks in", [q(rate("tickcast_feed_ticks_total"), "ticks/s")], "ops", width=6)
    b.panel("Updates out of the coalescer", [q(rate("tickcast_updates_total"), "updates/s")], "ops", width=6)
    b.panel("Coalescing ratio (ticks per update)",
            [q(f'{rate("tickcast_feed_ticks_total")} / clamp_min({rate("tickcast_updates_total")}, 1e-9)', "ratio")],
            "none", width=6)
    b.panel("Messages to clients", [q(rate("tickcast_messages_sent_total"), "messages/s")], "ops", width=6)
    b.panel("Dropped (slow consumers)", [q(rate("tickcast_dropped_total"), "drops/s")], "ops", width=12)
    b.panel("Frames per write", [q(
        f'{rate("tickcast_frames_written_total")} / clamp_min({rate("tickcast_writes_total")}, 1e-9)',
        "frames per write")], "none", width=12,
        description="How many frames each write to a client carries (corking, --max-delay, raises it).")
    b.row("Latency")
    b.panel("Fan-out latency", quantiles("tickcast_fanout_latency_seconds"), "s", width=12,
            description="From an update's release by the coalescer to its write to the client's socket.")
    b.panel("Coalesce delay", quantiles("tickcast_coalesce_delay_seconds"), "s", width=12,
            description="From a tick's arrival to the release of the update that carries it.")
    for title, hist in [("Fan-out latency heatmap", "tickcast_fanout_latency_seconds"),
                        ("Coalesce delay heatmap", "tickcast_coalesce_delay_seconds")]:
        b.panel(title,
                [dict(q(f"sum by (le) (increase({hist}_bucket{{{NODE}}}[$__rate_interval]))", "{{le}}"), format="heatmap")],
                "s", kind="heatmap", width=12,
                extra={"options": {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
                                   "color": {"mode": "scheme", "scheme": "Oranges"}}})
    b.row("Health")
    b.panel("Heartbeat timeouts", [q(rate("tickcast_disconnects_total", selector=f'reason="heartbeat",{NODE}'), "timeouts/s")], "ops", width=6)
    b.panel("Rate-limit and auth rejections", [
        q(rate("tickcast_disconnects_total", selector=f'reason="rate_limit",{NODE}'), "closed 4429"),
        q(rate("tickcast_connections_total", selector=f'result="unauthorized",{NODE}'), "401 on upgrade"),
        q(rate("tickcast_disconnects_total", selector=f'reason="auth",{NODE}'), "closed 4401"),
    ], "ops", width=6)
    b.panel("Feed lines rejected", [q(rate("tickcast_feed_rejected_total", "reason"), "{{reason}}")], "ops", width=6)
    b.panel("Ready", [q(f"tickcast_ready{{{NODE}}}", "{{node}}")], "bool_yes_no", kind="stat", width=6)
    b.panel("RSS per connection", [q(
        f'process_resident_memory_bytes{{job=~"tickcast.*"}} / on (instance, job) clamp_min(tickcast_connections{{{NODE}}}, 1)',
        "{{instance}}")], "bytes", width=8)
    b.panel("Open files against the limit", [
        q(f'process_open_fds{{job=~"tickcast.*"}} {OF_NODES}', "open {{instance}}"),
        q(f'process_max_fds{{job=~"tickcast.*"}} {OF_NODES}', "limit {{instance}}"),
    ], "short", width=8)
    b.panel("CPU", [q(f'rate(process_cpu_seconds_total{{job=~"tickcast.*"}}[$__rate_interval]) {OF_NODES}', "{{instance}}")],
            "percentunit", width=8)
    b.panel("Connections against the cap", [
        q(f"sum by (node) (tickcast_connections{{{NODE}}})", "connections {{node}}"),
        q(f"sum by (node) (tickcast_max_connections{{{NODE}}})", "cap {{node}}"),
        q(f"sum by (node) (tickcast_handshakes{{{NODE}}})", "in HTTP phase {{node}}"),
    ], "short", width=6, description="--max-connections, and connections still in their handshake.")
    b.panel("Refused before a session", [q(rate("tickcast_refused_total", "reason"), "{{reason}}")], "ops", width=6,
            description="Upgrades and connections turned away: invalid, foreign origin, over a cap, out of descriptors.")
    b.panel("Tokens refused", [q(rate("tickcast_auth_failures_total", "reason"), "{{reason}}")], "ops", width=6)
    b.panel("Error replies", [q(rate("tickcast_client_errors_total", "code"), "{{code}}")], "ops", width=6)
    b.panel("Queue depths", [
        q(f"sum by (node) (tickcast_queued_updates{{{NODE}}})", "queued for writers {{node}}"),
        q(f"max by (node) (tickcast_queued_updates_max{{{NODE}}})", "most backed-up client {{node}}"),
        q(f"sum by (node) (tickcast_feed_queue{{{NODE}}})", "feed batches waiting {{node}}"),
    ], "short", width=12, description="Sampled each second by the hub. A client's queue is at most --queue.")
    b.panel("Threads", [q(f'process_threads{{job=~"tickcast.*"}} {OF_NODES}', "{{instance}}")], "short", width=12,
            description="OS threads per process: flat under any load or churn.")
    b.panel("Candles", [
        q(f"sum by (node) (rate(tickcast_candle_updates_total{{{NODE}}}[$__rate_interval]))", "bar messages {{node}}"),
        q(rate("tickcast_candle_late_ticks_total", "interval"), "late for {{interval}}"),
    ], "ops", width=24,
            description="Candle messages published (forming bars' updates and closes) and ticks too late for a bar "
                        "that had closed (a publisher's clock behind, or a replay out of order).")
    return b.json()


def loadgen():
    b = Board("tickcast-loadgen", "tickcast loadgen", "The live view of a load test (loadgen --metrics-listen).")
    b.row("Connections")
    b.panel("Connections", [q("sum(loadgen_connections_established)", "established"),
                            q("sum(loadgen_connections_target)", "target")], "short")
    b.panel("Failed connections", [q("sum(loadgen_connections_failed_total)", "failed")], "short")
    b.panel("Reconnects", [q("sum(increase(loadgen_reconnects_total[$__rate_interval]))", "reconnects")], "short")
    b.row("Messages")
    b.panel("Messages received", [q("sum(rate(loadgen_messages_received_total[$__rate_interval]))", "messages/s")], "ops", width=12)
    b.panel("Seq gaps", [q("sum(increase(loadgen_gaps_total[$__rate_interval]))", "gaps")], "short", width=12)
    b.row("Latency")
    for title, metric in [("Fan-out latency (receipt − pub)", "loadgen_fanout_latency_seconds"),
                          ("End-to-end latency (receipt − ts)", "loadgen_end_to_end_latency_seconds")]:
        b.panel(title, [q(f'max({metric}{{quantile="{p}"}})', f"p{label}")
                        for p, label in [("0.5", "50"), ("0.99", "99"), ("0.999", "99.9"), ("0.9999", "99.99")]], "s", width=12)
    b.panel("loadgen event-loop lag (its own saturation)", [q("max(loadgen_loop_lag_max_seconds)", "worst worker")], "s", width=24)
    return b.json()


here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dashboards")
for name, board in [("tickcast.json", tickcast()), ("loadgen.json", loadgen())]:
    with open(os.path.join(here, name), "w") as f:
        json.dump(board, f, indent=2)
        f.write("\n")
