#!/usr/bin/env python3
"""Generates cxrflow-dashboard.json (the provisioned Grafana dashboard).

Edit this file, then run it: `python3 deploy/grafana/make_dashboard.py`. scripts/validate-deploy.sh
fails when the JSON is not what this script generates, and checks every query's metric names
against the metrics the services register (deploy/check-metric-names.py).
"""
import json
import os

# Every service started with the stage runtime (Host::start) exports the stage metrics. The gateway
# consumes no topic: its consumed/lag/dead-letter/processing series stay empty; its own panels are
# in the "DICOM gateway" row.
SERVICES = ["gateway", "ingest", "preprocess", "inference", "triage", "feedback", "drift", "retrain_trigger", "results"]
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

_next_id = [0]


def pid():
    _next_id[0] += 1
    return _next_id[0]


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def refs():
    return iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def timeseries(title, targets, x, y, w=12, h=8, unit="short", description="", stack=False):
    r = refs()
    return {
        "id": pid(),
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"stacking": {"mode": "normal" if stack else "none"}, "fillOpacity": 10},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [target(e, l, next(r)) for e, l in targets],
    }


def stat(title, targets, x, y, w=6, h=4, unit="short", description=""):
    r = refs()
    return {
        "id": pid(),
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        "targets": [target(e, l, next(r)) for e, l in targets],
    }


def heatmap(title, metric, x, y, w=12, h=8, description=""):
    return {
        "id": pid(),
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "options": {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        "targets": [{"datasource": DS, "expr": f"sum by (le) (rate({metric}_bucket[{RI}]))",
                     "format": "heatmap", "legendFormat": "{{le}}", "refId": "A", "range": True}],
    }


def row(title, y):
    return {"id": pid(), "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def quantiles(metric, legend_prefix, by=""):
    grp = f"le{', ' + by if by else ''}"
    out = []
    for q in ("0.5", "0.95", "0.99"):
        out.append((f"histogram_quantile({q}, sum by ({grp}) (rate({metric}_bucket[{RI}])))",
                    f"{legend_prefix}p{q[2:]}" + (" {{" + by + "}}" if by else "")))
    return out


panels = []
y = 0
panels.append(row("Flow", y)); y += 1
panels.append(stat("Open studies on the worklist",
                   [("sum(cxrflow_triage_worklist_studies)", "open")], 0, y,
                   description="cxrflow_triage_worklist_studies summed over tiers"))
panels.append(stat("Predictions / s",
                   [(f"sum(rate(cxrflow_inference_predictions_total[{RI}]))", "predictions")], 6, y, unit="reqps"))
panels.append(stat("Dead letters / s (all stages)",
                   [(" + ".join(f"sum(rate(cxrflow_{s}_dead_lettered_records_total[{RI}]) or vector(0))"
                                for s in SERVICES), "dead letters")], 12, y, unit="reqps"))
panels.append(stat("Drift alerts raised (24h)",
                   [('sum(increase(cxrflow_drift_alerts_total{state="RAISED"}[24h]))', "raised")], 18, y))
y += 4
panels.append(timeseries("Throughput: records consumed / s by service",
                         [(f"sum(rate(cxrflow_{s}_consumed_records_total[{RI}]))", s) for s in SERVICES],
                         0, y, unit="reqps"))
panels.append(timeseries("Throughput: records produced / s by service",
                         [(f"sum(rate(cxrflow_{s}_produced_records_total[{RI}]))", s) for s in SERVICES],
                         12, y, unit="reqps"))
y += 8
panels.append(timeseries("Consumer lag (records) by service",
                         [(f"sum(cxrflow_{s}_consumer_lag_records)", s) for s in SERVICES], 0, y,
                         description="Records between each consumer group's position and the partition ends"))
panels.append(timeseries("Records in flight by service",
                         [(f"sum(cxrflow_{s}_in_flight_records)", s) for s in SERVICES], 12, y))
y += 8
panels.append(row("Latency", y)); y += 1
panels.append(timeseries("Processing latency p95 by service (arrival → outputs acknowledged)",
                         [(f"histogram_quantile(0.95, sum by (le) (rate(cxrflow_{s}_processing_seconds_bucket[{RI}])))", s)
                          for s in SERVICES], 0, y, unit="s"))
panels.append(heatmap("Inference processing latency (heatmap)", "cxrflow_inference_processing_seconds", 12, y))
y += 8
panels.append(timeseries("Model call time (session run)", quantiles("cxrflow_inference_session_run_seconds", ""),
                         0, y, w=8, unit="s"))
panels.append(timeseries("Micro-batch size", quantiles("cxrflow_inference_batch_size", ""), 8, y, w=8))
panels.append(timeseries("Image fetch (ingest) and decode (preprocess)",
                         quantiles("cxrflow_ingest_fetch_seconds", "fetch ")
                         + quantiles("cxrflow_preprocess_decode_seconds", "decode "), 16, y, w=8, unit="s"))
y += 8
panels.append(timeseries("Time in queue until read, p50/p90 by tier",
                         [(f"histogram_quantile({q}, sum by (le, tier) (rate(cxrflow_triage_time_in_queue_seconds_bucket[{RI}])))",
                           "p" + q[2:] + " {{tier}}") for q in ("0.5", "0.9")], 0, y, unit="s"))
panels.append(timeseries("Acquisition to read (feedback rolling window)",
                         [("cxrflow_feedback_acquisition_to_read_seconds",
                           "{{tier}} q{{quantile}} {{model_version}}")], 12, y, unit="s"))
y += 8
panels.append(row("Errors", y)); y += 1
panels.append(timeseries("Dead-letter rate by service and reason",
                         [(f"sum by (reason) (rate(cxrflow_{s}_dead_lettered_records_total[{RI}]))", s + " {{reason}}")
                          for s in SERVICES], 0, y, unit="reqps", stack=True))
panels.append(timeseries("Transient errors retried by service and kind",
                         [(f"sum by (kind) (rate(cxrflow_{s}_transient_errors_total[{RI}]))", s + " {{kind}}")
                          for s in SERVICES], 12, y, unit="reqps", stack=True))
y += 8
panels.append(timeseries("Model: NaN outputs and load failures",
                         [(f"sum by (version) (rate(cxrflow_inference_nan_outputs_total[{RI}]))", "NaN {{version}}"),
                          (f"sum by (outcome) (increase(cxrflow_inference_model_loads_total[{RI}]))", "loads {{outcome}}")],
                         0, y, w=12))
panels.append(timeseries("Preprocess: lateral views, unknown view positions and ages, decoder panics",
                         [(f"sum(rate(cxrflow_preprocess_lateral_images_total[{RI}]))", "lateral"),
                          (f"sum(rate(cxrflow_preprocess_view_position_unknown_images_total[{RI}]))", "view unknown"),
                          (f"sum(rate(cxrflow_preprocess_age_unknown_images_total[{RI}]))", "age unknown"),
                          (f"sum(rate(cxrflow_preprocess_decoder_panics_total[{RI}]))", "decoder panics")],
                         12, y, w=12, unit="reqps"))
y += 8
panels.append(row("Model and worklist", y)); y += 1
panels.append(timeseries("Worklist size by tier", [("sum by (tier) (cxrflow_triage_worklist_studies)", "{{tier}}")],
                         0, y, stack=True))
panels.append(timeseries("Predictions / s by model version and role",
                         [(f"sum by (version, role) (rate(cxrflow_inference_predictions_total[{RI}]))", "{{version}} {{role}}")],
                         12, y, unit="reqps"))
y += 8
panels.append(timeseries("Drift score by model", [("cxrflow_drift_score", "{{model}} {{model_version}}")], 0, y,
                         description="Unified drift score of the latest evaluation"))
panels.append(timeseries("Drift alerts by channel and state",
                         [("sum by (channel, state) (increase(cxrflow_drift_alerts_total[1h]))", "{{channel}} {{state}}")],
                         12, y))
y += 8
panels.append(timeseries("Online AUROC by finding", [("cxrflow_feedback_auroc", "{{finding}} {{model_version}}")],
                         0, y, unit="percentunit",
                         description="Rolling-window AUROC against radiologists' final labels"))
panels.append(timeseries("Sensitivity / specificity at the manifest threshold",
                         [("cxrflow_feedback_sensitivity", "sens {{finding}}"),
                          ("cxrflow_feedback_specificity", "spec {{finding}}")], 12, y, unit="percentunit"))
y += 8
panels.append(timeseries("Execution provider per loaded model version",
                         [("cxrflow_inference_execution_provider_info == 1", "{{instance}} {{model}} {{version}} {{provider}}")],
                         0, y, w=12))
panels.append(timeseries("Rollout decisions applied",
                         [(f"sum by (decided_by) (increase(cxrflow_inference_rollout_decisions_total[{RI}]))", "{{decided_by}}")],
                         12, y, w=12))
y += 8
panels.append(row("DICOM gateway", y)); y += 1
panels.append(timeseries("Gateway: instances received and published / s by protocol",
                         [(f"sum by (protocol) (rate(cxrflow_gateway_instances_received_total[{RI}]))", "received {{protocol}}"),
                          (f"sum by (protocol) (rate(cxrflow_gateway_instances_published_total[{RI}]))", "published {{protocol}}")],
                         0, y, w=8, unit="reqps",
                         description="Published = stored and the scan event acknowledged by Kafka (the sender was told success)"))
panels.append(timeseries("Gateway: receipt to Kafka ack",
                         quantiles("cxrflow_gateway_receipt_to_ack_seconds", "", by="protocol"), 8, y, w=8, unit="s"))
panels.append(timeseries("Gateway: refusals / s by reason",
                         [(f"sum by (reason) (rate(cxrflow_gateway_rejected_total[{RI}]))", "{{reason}}")],
                         16, y, w=8, unit="reqps", stack=True,
                         description="Connections, associations, contexts, requests and instances refused or failed"))
y += 8
panels.append(timeseries("Gateway: DICOM associations",
                         [("sum(cxrflow_gateway_associations_active)", "open"),
                          (f"sum(rate(cxrflow_gateway_associations_total[{RI}])) * 60", "established / min")],
                         0, y, w=8))
panels.append(timeseries("Gateway: bytes received / s by protocol",
                         [(f"sum by (protocol) (rate(cxrflow_gateway_received_bytes_total[{RI}]))", "{{protocol}}")],
                         8, y, w=8, unit="Bps"))
panels.append(timeseries("Gateway: presentation contexts refused and producer rebuilds",
                         [(f"sum by (reason) (rate(cxrflow_gateway_presentation_contexts_refused_total[{RI}]))", "contexts {{reason}}"),
                          (f"sum(increase(cxrflow_gateway_producer_rebuilds_total[{RI}]))", "producer rebuilds")],
                         16, y, w=8))
y += 8
panels.append(row("Results to the PACS and EHR", y)); y += 1
panels.append(timeseries("Results: deliveries / s by destination and outcome",
                         [(f"sum by (destination, outcome) (rate(cxrflow_results_deliveries_total[{RI}]))", "{{destination}} {{outcome}}")],
                         0, y, w=8, unit="reqps",
                         description="delivered; retried = the destination was unavailable (down, 5xx, timeout); refused = dead-lettered with its answer"))
panels.append(timeseries("Results: pending deliveries and the oldest's age",
                         [("sum by (destination) (cxrflow_results_pending_deliveries)", "{{destination}} pending"),
                          ("max by (destination) (cxrflow_results_oldest_pending_age_seconds)", "{{destination}} oldest (s)")],
                         8, y, w=8))
panels.append(timeseries("Results: queued to delivered",
                         quantiles("cxrflow_results_delivery_latency_seconds", "", by="destination"), 16, y, w=8, unit="s"))
y += 8

dashboard = {
    "uid": "cxrflow-overview",
    "title": "cxrflow overview",
    "tags": ["cxrflow"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [{
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0,
    }]},
    "annotations": {"list": []},
    "panels": panels,
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cxrflow-dashboard.json")
    with open(out, "w") as f:
        json.dump(dashboard, f, indent=2, sort_keys=False)
        f.write("\n")
    print(out)
