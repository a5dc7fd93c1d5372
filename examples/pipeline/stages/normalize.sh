#!/bin/sh
# normalize DAY: trim fields, lower-case the domain, upper-case the region
set -eu
mkdir -p data/silver
awk -F, -v OFS=, '{
  for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i)
  $2 = tolower($2); $4 = toupper($4); print
}' "data/bronze/$1.csv" > "data/silver/$1.csv"
