#!/bin/sh
# dedupe DAY: one lead per domain (the first seen)
set -eu
mkdir -p data/gold
awk -F, '!seen[$2]++' "data/silver/$1.csv" > "data/gold/$1.csv"
echo "$(wc -l < "data/gold/$1.csv") unique leads on $1"
