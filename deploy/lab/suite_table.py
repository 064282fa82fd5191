#!/usr/bin/env python3
"""Prints the suite's table (deploy/lab/lab.sh suite) from its JSON rows, as Markdown."""
import json
import sys

rows = json.load(open(sys.argv[1]))
cols = ["fault", "sent", "2xx_events", "2xx", "503", "429", "no_answer", "windows", "lost", "duplicated", "unacked_stored", "recovered_s", "retries",
        "alerts", "note"]
heads = ["fault", "events sent", "events 2xx", "requests 2xx", "503 (attempts)", "429 (attempts)", "no answer (attempts)", "windows stored = acked", "samples lost",
         "samples duplicated", "stored, answer lost",
         "s to recover (after heal)", "re-sends", "alerts (Prometheus API)", "the probes' own path, checks"]
print("| " + " | ".join(heads) + " |")
print("|" + "---|" * len(heads))
for r in rows:
    print("| " + " | ".join("—" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
