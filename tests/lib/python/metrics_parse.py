"""metrics_parse.py -- reads a Prometheus text exposition (0.0.4) on stdin
with Debian's python3-prometheus-client, the parser scrapers use, and
prints what it understood as JSON: one [family, type, sample, labels, value]
per sample.  A text the parser refuses exits non-zero with its error, so
tests/nginx/720-metrics.t checks hotffi's output against a real parser and
reads the values from it, not from its own reading of the text.

Run with Debian's /usr/bin/python3 (the package installs there).
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    out = []
    for fam in text_string_to_metric_families(sys.stdin.read()):
        for s in fam.samples:
            value = s.value
            if math.isinf(value):
                value = "+Inf"
            out.append([fam.name, fam.type, s.name, s.labels, value])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
