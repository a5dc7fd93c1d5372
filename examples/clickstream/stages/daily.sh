#!/bin/sh
# A day's clicks per page, from each of its hourly counts.
set -eu
day="$1"
mkdir -p daily
hours=$(ls hourly/"$day"T*.txt | wc -l)
cat hourly/"$day"T*.txt | awk -v hours="$hours" '
  { clicks[$1] += $2; total += $2 }
  END {
    print "hours", hours
    print "total", total + 0
    for (p in clicks) print p, clicks[p]
  }' | sort > "daily/$day.txt"
