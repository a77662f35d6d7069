# Metrics: Prometheus's promtool checks the scrape job and alert rules of
# `inv doctor --prometheus`, and runs their rule tests (tests/unit/test_doctor_prometheus.py).
promtool_version=v0.316.0   # keep equal to tests/unit/test_doctor_prometheus.py
promtool_bin="$TAILWART_CACHE/tools/promtool-$promtool_version/promtool"
if [ ! -x "$promtool_bin" ]; then
  echo "setup: building promtool $promtool_version (several minutes, once)"
  go_module_build github.com/prometheus/prometheus "$promtool_version" ./cmd/promtool "$promtool_bin"
fi
"$promtool_bin" --version >/dev/null
