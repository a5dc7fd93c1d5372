#!/bin/sh
# score DAY: region weight plus a bonus for companies that look established
set -eu
mkdir -p data/scored
awk -F, -v OFS=, -v bonus="${SCORE_BONUS_REGION:-}" '{
  s = ($4 == "EU") ? 30 : ($4 == "NA") ? 25 : 10
  if ($3 ~ /(Ltd|GmbH|Inc|SA)$/) s += 20
  if ($4 == bonus) s += 15
  print $0, s
}' "data/gold/$1.csv" > "data/scored/$1.csv"
