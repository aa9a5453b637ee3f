"""Time-to-notify: from the fault starting to the DingTalk stand-in and the SMTP sink having the alert.

    .venv/bin/python bench/bench_time_to_notify.py [--profile fast|demo|default] [--json out.json]

Runs the local-process stack (devtools.devstack) with the chosen timing profile, then
1. TalkerHighErrorRate: fault injection error_rate=0.5 under steady traffic;
2. TalkerDown: talker killed.
Each is compared with its theoretical floor = rule `for` + talker scrape interval + rule evaluation
interval + Alertmanager group_wait (all read from the rendered config), printed as a ratio. The default
(production) profile takes several minutes per alert; fast runs in about half a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.devstack import DevStack
from stack.alertpath import DINGTALK_FIRING_MARK, DingTalkInbox, MailApi, Prometheus
from stack.config_render import RenderedConfig, parse_duration
from stack.procs import poll_until
from stack.smoke import Endpoints, Traffic, set_fault


def floor_parts(rendered: RenderedConfig, alertname: str) -> dict[str, float]:
    prom = yaml.safe_load(rendered.prometheus_config.read_text())
    talker_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "talker")
    rule_for = 0.0
    for path in rendered.rules_dir.glob("*.yml"):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            for rule in group["rules"]:
                if rule.get("alert") == alertname and "for" in rule:
                    rule_for = parse_duration(rule["for"])
    am = yaml.safe_load(rendered.alertmanager_config.read_text())
    return {
        "for": rule_for,
        "scrape": parse_duration(talker_job.get("scrape_interval", prom["global"]["scrape_interval"])),
        "evaluation": parse_duration(prom["global"]["evaluation_interval"]),
        "group_wait": parse_duration(am["route"]["group_wait"]),
    }


def wait_both(stack: DevStack, alertname: str, started: float, timeout: float) -> tuple[float, float]:
    inbox, mail = DingTalkInbox(stack.urls["dingtalk"]), MailApi(stack.urls["mailpit"])
    skip, mail_before = len(inbox.messages()), mail.ids()
    times: dict[str, float] = {}

    def arrived() -> bool:
        if "dingtalk" not in times and inbox.find(DINGTALK_FIRING_MARK, alertname, skip=skip):
            times["dingtalk"] = time.monotonic() - started
        if "mail" not in times and mail.find(alertname, exclude=mail_before):
            times["mail"] = time.monotonic() - started
        return len(times) == 2

    poll_until(arrived, timeout=timeout, interval=0.2, what=f"{alertname} in DingTalk and email")
    return times["dingtalk"], times["mail"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["fast", "demo", "default"], default="fast")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    timeout = 120 if args.profile == "fast" else 900
    results = []
    with DevStack(profile=args.profile, env={"TALKER_ENABLE_PIPER": "false"}) as stack:
        u = stack.urls
        ep = Endpoints(talker=u["talker"], admin_token=stack.admin_token)
        # Let Prometheus see talker healthy first, so TalkerDown measures a real transition.
        prom = Prometheus(u["prometheus"])
        poll_until(lambda: prom.target_health("talker") == ["up"], timeout=120, what="talker scraped")

        with Traffic(u["talker"], rate=4.0):
            started = time.monotonic()
            set_fault(ep, {"error_rate": 0.5})
            try:
                dingtalk, mail = wait_both(stack, "TalkerHighErrorRate", started, timeout)
            finally:
                set_fault(ep, None)
        results.append(("TalkerHighErrorRate", dingtalk, mail, floor_parts(stack.rendered, "TalkerHighErrorRate")))

        started = time.monotonic()
        stack.procs["talker"].stop()
        dingtalk, mail = wait_both(stack, "TalkerDown", started, timeout)
        results.append(("TalkerDown", dingtalk, mail, floor_parts(stack.rendered, "TalkerDown")))

    print(f"\ntime-to-notify, profile {args.profile} (floor = for + scrape + evaluation + group_wait)")
    print(f"{'alert':<22}{'DingTalk s':>11}{'email s':>9}{'floor s':>9}{'ratio':>7}   floor parts")
    rows = []
    for name, dingtalk, mail, parts in results:
        floor = sum(parts.values())
        ratio = max(dingtalk, mail) / floor if floor else float("nan")
        print(f"{name:<22}{dingtalk:>11.1f}{mail:>9.1f}{floor:>9.1f}{ratio:>7.2f}   "
              + ", ".join(f"{k} {v:g}" for k, v in parts.items()))
        rows.append({"alert": name, "profile": args.profile, "dingtalk_s": round(dingtalk, 2),
                     "email_s": round(mail, 2), "floor_s": floor, "ratio": round(ratio, 2), "floor_parts": parts})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
