#!/usr/bin/env bash
# make run on a new home: seconds to the page, to /readyz 200 (first model served), to the first scored story
cd "$(dirname "$0")/../.."
rm -rf /tmp/fs-fr; port=18558
start=$(date +%s.%N)
(FINSENT_HOME=/tmp/fs-fr FINSENT_HTTP__PORT=$port make run > /tmp/fs-fr.log 2>&1 &)
t_page=""; t_ready=""; t_scored=""
while true; do
  now=$(date +%s.%N); el=$(echo "$now - $start" | bc)
  if [ -z "$t_page" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/)" = 200 ]; then t_page=$el; echo "page $t_page"; fi
  if [ -n "$t_page" ] && [ -z "$t_ready" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:$port/readyz)" = 200 ]; then t_ready=$el; echo "ready $t_ready"; fi
  if [ -n "$t_ready" ] && [ -z "$t_scored" ]; then
    n=$(curl -s localhost:$port/ui/overview | python3 -c "import json,sys; print(len(json.load(sys.stdin)['stories']))" 2>/dev/null)
    if [ "${n:-0}" -gt 0 ]; then t_scored=$el; echo "scored $t_scored ($n stories)"; break; fi
  fi
  if (( $(echo "$el > 1500" | bc) )); then echo timeout; break; fi
  sleep 0.5
done
grep -o '"train_seconds": [0-9.]*\|"duration_s": [0-9.]*' /tmp/fs-fr/models/versions/*/manifest.json | head -2
pkill -TERM -f "finsent run"; sleep 5
