# Sourced by e2e/chaos.sh and e2e/chaos-ha.sh (they define ok, fail and say).
# chaos_check WORK WRITERS WATCHERS HOST...: runs e2e/lib/chaos-check.py over a chaos run's files, reports each of
# its results through ok/fail/say, and leaves its counts in the global CNT (CNT[lost], ...).
chaos_check() {
  local work=$1 writers=$2 watchers=$3 prc kind rest key val; shift 3
  /usr/bin/env python3 "$(dirname "${BASH_SOURCE[0]}")/chaos-check.py" "$work" "$writers" "$watchers" "$#" "$*" \
    >"$work/analysis.out" 2>&1
  prc=$?
  declare -gA CNT=()
  while read -r kind rest; do
    case $kind in
      ok) ok "$rest" ;;
      FAIL) fail "$rest" ;;
      INFO) say "$rest" ;;
      COUNT) read -r key val <<<"$rest"; CNT[$key]=$val ;;
      *) say "analysis: $kind $rest" ;;
    esac
  done <"$work/analysis.out"
  [ "$prc" = 0 ] || fail "the analysis failed (exit $prc); see $work/analysis.out"
}
