# shellcheck shell=bash
# e2e/lib/report.sh: how the e2e scripts report, sourced by them. Each line starts with the seconds since T0;
# fail counts in FAILS and remembers its text in FAILED_CHECKS (the caller sets T0, FAILS=0, FAILED_CHECKS=()).
ts() { printf '%4ds' $(($(date +%s) - T0)); }
say() { echo "[$(ts)] $*"; }
step() { echo; echo "[$(ts)] ==== $*"; }
ok() { echo "[$(ts)]   ok   $*"; }
fail() { echo "[$(ts)]   FAIL $*"; FAILS=$((FAILS + 1)); FAILED_CHECKS+=("$*"); }
die() { fail "$*"; echo "[$(ts)] fatal: cannot go on"; exit 1; }
noansi() { sed -e 's/\x1b\[[0-9;]*m//g'; }
indent() { sed -e 's/^/         | /'; }
