#!/usr/bin/env bash
# Times the fast path of scripts/install-criu.sh (CRIU already installed and
# good) 5 times and prints one JSON line:
#   {"name":"install-criu-fast-path","runs":[ms,...],"median_ms":N}
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=$here/../scripts/install-criu.sh
runs=${RUNS:-5}

# Refuse to time a slow path (a build): the fast path must already apply.
if ! bash "$script" --check 2>/dev/null; then
  echo "bench/install-criu.sh: CRIU is not installed/usable; run scripts/install-criu.sh first" >&2
  exit 1
fi

times=()
for ((i = 0; i < runs; i++)); do
  start=$(date +%s%N)
  bash "$script" 2>/dev/null
  end=$(date +%s%N)
  times+=("$(awk -v ns=$((end - start)) 'BEGIN { printf "%.1f", ns / 1e6 }')")
done

median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{ a[NR] = $1 } END {
  if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
list=$(IFS=,; echo "${times[*]}")
printf '{"name":"install-criu-fast-path","runs":[%s],"median_ms":%s}\n' "$list" "$median"
