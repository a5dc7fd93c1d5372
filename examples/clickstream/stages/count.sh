#!/bin/sh
# Clicks per page in one hour's log (an hour without a log has none).
set -eu
hour="$1"
mkdir -p hourly
if [ -f "events/$hour.log" ]; then
  sort "events/$hour.log" | uniq -c | awk '{print $2, $1}'
fi > "hourly/$hour.txt"
