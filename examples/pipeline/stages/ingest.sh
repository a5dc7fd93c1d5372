#!/bin/sh
# ingest DAY: data/raw/DAY.csv -> data/bronze/DAY.csv (header dropped)
set -eu
day="$1"
mkdir -p data/bronze
tail -n +2 "data/raw/$day.csv" > "data/bronze/$day.csv.tmp"
mv "data/bronze/$day.csv.tmp" "data/bronze/$day.csv"
echo "ingested $(wc -l < "data/bronze/$day.csv") rows for $day"
