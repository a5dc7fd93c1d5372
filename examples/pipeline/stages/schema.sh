#!/bin/sh
# schema DAY: fail on any bronze row without exactly four non-empty fields
set -eu
awk -F, -v day="$1" '
  NF != 4 || $1 == "" || $2 == "" || $4 == "" { printf "bad row %d of %s: %s\n", NR, day, $0; bad++ }
  END { if (bad) exit 1; print "schema ok for " day }
' "data/bronze/$1.csv"
