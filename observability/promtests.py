"""promtool unit tests for the SLO burn-rate alerts, one file per SLO.

Every SLO gets the same four scenarios, with traffic expressed in multiples of
its error budget ``b`` (1000 events a minute):

  normal     0.2 b for 3 days                  -> nothing fires
  no traffic no events at all                  -> nothing fires (0/0 is NaN)
  fast burn  0.2 b for 1 d, then 16 b for 1 h  -> page fires, ticket stays
             quiet; 15 min after the burn stops the page has resolved
  slow burn  2 b for 26 h                      -> ticket fires, page quiet

The scenario numbers are chosen from the workbook's thresholds (page 14.4x /
6x, ticket 3x / 1x), not read back from the generated rules, so a rule that
is wrong (a swapped window, a missing `and`) makes promtool fail.
The plain alerts are tested by hand in tests/voice_alerts_test.yml."""
from __future__ import annotations

from typing import Any

from observability.slo import SLO, SLOS

PER_MINUTE = 1000
BASE = {"service": "gateway", "model": "pipeline", "variant": "stable"}


def _series(segments: list[tuple[float, int]]) -> str:
    """Cumulative counter in promtool's expanding notation from (rate per
    minute, minutes) segments; the first sample is 0 at t=0."""
    parts, value, first = [], 0.0, True
    for per_min, minutes in segments:
        if first:
            parts.append(f"{value:g}+{per_min:g}x{minutes}")
            first = False
        else:
            # A new segment's first sample is one minute after the previous one.
            parts.append(f"{value + per_min:g}+{per_min:g}x{minutes - 1}")
        value += per_min * minutes
    return " ".join(parts)


def _labels(extra: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in (BASE | extra).items()) + "}"


def input_series(slo: SLO, bad_fractions: list[tuple[float, int]]) -> list[dict[str, str]]:
    """Series feeding ``slo`` with the given (bad fraction, minutes) segments."""
    total = [(PER_MINUTE, m) for _, m in bad_fractions]
    bad = [(round(f * PER_MINUTE, 6), m) for f, m in bad_fractions]
    good = [(PER_MINUTE - b, m) for (b, m) in bad]
    if slo.name == "turn_success":
        return [
            {"series": "voice_gateway_turns_total" + _labels({"outcome": "failed"}), "values": _series(bad)},
            {"series": "voice_gateway_turns_total" + _labels({"outcome": "completed"}), "values": _series(good)},
        ]
    metric, le = {
        "voice_to_voice_latency": ("voice_gateway_voice_to_voice_seconds", "1.2"),
        "barge_in_reaction": ("voice_gateway_barge_in_reaction_seconds", "0.5"),
    }[slo.name]
    return [
        {"series": f"{metric}_bucket" + _labels({"le": le}), "values": _series(good)},
        {"series": f"{metric}_bucket" + _labels({"le": "+Inf"}), "values": _series(total)},
        {"series": f"{metric}_count" + _labels({}), "values": _series(total)},
    ]


def _expect(alert: dict[str, Any]) -> dict[str, Any]:
    return {"exp_labels": dict(alert["labels"]), "exp_annotations": dict(alert["annotations"])}


def _checks(at: str, page: list, ticket: list, alerts: dict[str, dict]) -> list[dict[str, Any]]:
    page_name, ticket_name = (a["alert"] for a in alerts.values())
    return [{"eval_time": at, "alertname": page_name, "exp_alerts": page},
            {"eval_time": at, "alertname": ticket_name, "exp_alerts": ticket}]


def promtool_file(slo: SLO, rule_file: str, burn_alerts: list[dict[str, Any]]) -> dict[str, Any]:
    b = slo.budget
    alerts = {a["labels"]["severity"]: a for a in burn_alerts}
    page, ticket = _expect(alerts["page"]), _expect(alerts["ticket"])
    day = 24 * 60
    tests = [
        {"name": f"{slo.name}: normal traffic at 0.2x budget stays quiet for 3 days",
         "interval": "1m",
         "input_series": input_series(slo, [(0.2 * b, 3 * day)]),
         "alert_rule_test": [c for at in ("10m", "1h", "1d", "3d")
                             for c in _checks(at, [], [], alerts)]},
        {"name": f"{slo.name}: no traffic (0/0) stays quiet",
         "interval": "1m",
         "input_series": [{"series": 'up{job="gateway"}', "values": "1x120"}],
         "alert_rule_test": _checks("2h", [], [], alerts)},
        {"name": f"{slo.name}: a 16x burn for an hour pages, then resolves",
         "interval": "1m",
         "input_series": input_series(slo, [(0.2 * b, day), (16 * b, 60), (0.2 * b, 30)]),
         "alert_rule_test": (_checks("1410m", [], [], alerts)             # 23.5 h, before the burn
                             + _checks("1500m", [page], [], alerts)        # after 1 h of burn
                             + _checks("1515m", [], [], alerts))},         # 15 min after
        {"name": f"{slo.name}: a steady 2x burn opens a ticket, not a page",
         "interval": "1m",
         "input_series": input_series(slo, [(2 * b, 26 * 60)]),
         "alert_rule_test": _checks("26h", [], [ticket], alerts)},
    ]
    # Rules every 5 m (not 1 m) keep 3 simulated days cheap for promtool.
    return {"rule_files": [f"../rules/{rule_file}"], "evaluation_interval": "5m", "tests": tests}


def promtool_files(rule_docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """File name -> promtool test document, from the generated rule documents."""
    out = {}
    for slo in SLOS:
        rule_file = f"slo_{slo.name}.yml"
        alert_group = rule_docs[rule_file]["groups"][1]["rules"]
        out[f"slo_{slo.name}_test.yml"] = promtool_file(slo, rule_file, alert_group)
    return out
