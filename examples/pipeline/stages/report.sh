#!/bin/sh
# report: leads per region and the ten best scores over every scored day
set -eu
cat data/scored/*.csv > data/report.tmp
{
  echo "leads per region"
  cut -d, -f4 data/report.tmp | sort | uniq -c | sort -rn
  echo "top leads"
  sort -t, -k5,5nr -k2,2 data/report.tmp | head -n 10
  echo "total $(wc -l < data/report.tmp)"
} > data/report.txt
rm data/report.tmp
cat data/report.txt
