"""Gathers the device check's results into one JSON object (printed): the machine, each phase's exit code and
time, the C++ test results, every training run's figures, and the issue's goals checked against them.

  python3 summarize.py RESULTS_DIR ENV_LOG TESTS_LOG
"""
import glob
import json
import os
import re
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    res_dir, env_log, tests_log = sys.argv[1:4]
    out = {"env": open(env_log).read().splitlines() if os.path.exists(env_log) else [], "phases": {}, "runs": {}}
    for p in sorted(glob.glob(os.path.join(res_dir, "phase_*.json"))):
        out["phases"][os.path.basename(p)[6:-5]] = load(p)
    for p in sorted(glob.glob(os.path.join(res_dir, "*.json"))):
        name = os.path.basename(p)[:-5]
        if not name.startswith("phase_"):
            out["runs"][name] = load(p)
    if os.path.exists(tests_log):
        text = open(tests_log).read()
        out["tests"] = {
            "passed": re.findall(r"Test +#\d+: (\S+) \.+ +Passed", text),
            "failed": re.findall(r"Test +#\d+: (\S+) \.+\**(?:Failed|Timeout|Exception|\s*Not Run)", text),
            "cases_not_ok": re.findall(r"^not ok - (.*)$", text, re.M),
        }
    r = out["runs"]

    def ips(k):
        return (r.get(k) or {}).get("images_per_second") or 0.0

    goals = {}
    if ips("ours_n"):
        if ips("official_default_n"):
            goals["ours_vs_official_default"] = {"ratio": ips("ours_n") / ips("official_default_n"), "goal": 2.0}
        if ips("official_tuned_n"):
            goals["ours_vs_official_tuned"] = {"ratio": ips("ours_n") / ips("official_tuned_n"), "goal": 1.3}
        goals["ours_gpu_util"] = {"value": (r.get("ours_n") or {}).get("gpu_util_mean", 0.0), "goal": 90.0}
    for g in goals.values():
        g["met"] = (g.get("ratio", g.get("value", 0.0))) >= g["goal"]
    if ips("ours_s") and ips("official_default_s"):
        goals["yolo26s_ours_vs_official_default"] = {"ratio": ips("ours_s") / ips("official_default_s")}
    out["goals"] = goals
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
