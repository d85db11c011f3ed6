#!/usr/bin/env bash
# Differential etcdctl test: runs the same scripted etcdctl cases against a
# real etcd and against `k8s datastore`, normalizes what legitimately differs
# (ids, raft fields, sizes, versions, timings, lease ids, clientv3 log lines)
# and diffs the two transcripts case by case. Endpoints are written
# 127.0.0.1:PORT; a representative set of cases (NAME@http, NAME@unix) runs
# again with http://127.0.0.1:PORT and unix:///path.
#
#   tests/etcdctl/run.sh [path/to/k8s]        (default: target/x86_64-unknown-linux-gnu/release/k8s, make build)
#
# Environment:
#   ONLY=REGEX     run only the cases whose name matches REGEX
#   KEEP_TMP=1     keep the temp dir (raw and normalized transcripts, logs)
#   VERBOSE=1      print the normalized transcript of passing cases too
#
# Exit code 0 only if every case passes. Needs: etcd, etcdctl (3.4+), openssl,
# perl, ss, timeout. Everything listens on 127.0.0.1 only.
#
# Revisions: every case records the store revision at its start (R0) on each
# server; commands name revisions as @N (= R0+N) and the transcripts show
# revisions as @N too, so a case compares revisions exactly *relative to its
# start*. The case `initial-revision` compares absolute revisions of a fresh
# store, so a different starting point is still caught (once, by that case).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
K8S=${1:-$ROOT/target/x86_64-unknown-linux-gnu/release/k8s}
[[ $K8S == /* ]] || K8S=$PWD/$K8S
ONLY=${ONLY:-}
export ETCDCTL_API=3
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY ETCDCTL_USER ETCDCTL_PASSWORD || true
for v in $(env | sed -n 's/^\(ETCD_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

for tool in etcd etcdctl openssl perl ss timeout; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (see scripts/deps.sh)" >&2; exit 2; }
done
[[ -x $K8S ]] || { echo "no k8s binary at $K8S (cargo build --release)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/etcdctl-diff.XXXXXX)
PIDS=$TMP/pids               # one file per live background process, for the trap
mkdir -p "$PIDS"
track() { : >"$PIDS/$1"; }
untrack() { rm -f "$PIDS/$1"; }
START=$SECONDS

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  local pids=()
  for pid in "$PIDS"/*; do [[ -e $pid ]] && pids+=("${pid##*/}"); done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a private copy: the binary under test cannot change during the run when
# someone rebuilds, and nothing that stops processes named "k8s" hits ours.
mkdir -p "$TMP/bin"
cp "$K8S" "$TMP/bin/k8s-under-test"
SRC_K8S=$K8S
K8S=$TMP/bin/k8s-under-test

# ---------------------------------------------------------------- servers

# free_port VAR: a port no socket uses and not handed out before in this run, into VAR. A function that
# sets VAR, not $(free_port): in a subshell USED_PORTS is forgotten, and two servers of one pair once got
# the same port (etcd took it, ours could not bind, and both transcripts came from that one etcd).
USED_PORTS=" "
free_port() {
  local _port
  while :; do
    _port=$((20000 + RANDOM % 30000))
    [[ $USED_PORTS == *" $_port "* ]] && continue
    [[ -z $(ss -Htan "( sport = :$_port or dport = :$_port )" 2>/dev/null) ]] || continue
    USED_PORTS+="$_port "
    printf -v "$1" '%s' "$_port"
    return
  done
}

# wait_ready NAME PID ENDPOINT [etcdctl TLS args...]
wait_ready() {
  local name=$1 pid=$2 ep=$3; shift 3
  local deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || { echo "$name exited during start-up" >&2; return 1; }
    if timeout 3 etcdctl --endpoints="$ep" "$@" --dial-timeout=1s --command-timeout=1s \
      endpoint health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name not ready on $ep after 15s" >&2
  return 1
}

stop_pid() {
  local pid=$1
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  untrack "$pid"
}

# How the pair started next is addressed (--endpoints), as users write it:
#   plain  127.0.0.1:PORT
#   http   http://127.0.0.1:PORT   (etcdctl 3.4 then sends "http://..." as the
#          HTTP/2 :authority of endpoint status, defrag, hashkv: vendor/h2)
#   unix   unix:///abs/path        (etcdctl 3.4 sends the path, or the whole
#          endpoint, as :authority: vendor/h2; etcd only listens on
#          unix://NAME:PORT, a file NAME:PORT in its working directory, which
#          clients reach by its full path)
SPELL=plain

# start_pair DIR: a fresh etcd and a fresh datastore; sets E_EP O_EP E_PID O_PID.
start_pair() {
  local d=$1 c p o
  mkdir -p "$d"
  free_port c; free_port p; free_port o
  local e_listen="http://127.0.0.1:$c" o_listen="http://127.0.0.1:$o"
  if [[ $SPELL == unix ]]; then e_listen=unix://etcd.sock:1 o_listen=unix://$d/ours.sock; fi
  (cd "$d" && exec etcd --name default --data-dir "$d/etcd" \
    --listen-client-urls "$e_listen" --advertise-client-urls "$e_listen" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "default=http://127.0.0.1:$p") >"$d/etcd.log" 2>&1 &
  E_PID=$!; track "$E_PID"
  "$K8S" datastore --data-dir "$d/ours" --listen "$o_listen" >"$d/ours.log" 2>&1 &
  O_PID=$!; track "$O_PID"
  case $SPELL in
    plain) E_EP=127.0.0.1:$c O_EP=127.0.0.1:$o ;;
    http) E_EP=http://127.0.0.1:$c O_EP=http://127.0.0.1:$o ;;
    unix) E_EP=unix://$d/etcd.sock:1 O_EP=unix://$d/ours.sock ;;
  esac
  wait_ready etcd "$E_PID" "$E_EP" || { tail -20 "$d/etcd.log" >&2; return 1; }
  wait_ready "k8s datastore" "$O_PID" "$O_EP" || { tail -20 "$d/ours.log" >&2; return 1; }
}

stop_pair() { stop_pid "$E_PID"; stop_pid "$O_PID"; }

# ---------------------------------------------------------------- normalizer

cat >"$TMP/normalize.pl" <<'PERL'
# normalize.pl R0 LEASEFILE NOREBASE < raw > normalized
use strict; use warnings; no warnings 'portable';
my ($r0, $leasefile, $norebase) = @ARGV;
my (%hex, %dec, $n);
if (open(my $fh, '<', $leasefile)) {
  while (my $id = <$fh>) {
    chomp $id; next if $id eq '' || exists $hex{$id};
    $n++; $hex{$id} = "L$n"; $dec{hex($id)} = "L$n";
  }
}
sub rb { my $v = shift; return $v == 0 ? '0' : '@' . ($v - $r0); }
while (my $l = <STDIN>) {
  # clientv3's zap log lines ("retrying of unary invoker failed", snapshot progress...)
  next if $l =~ /^\{"level":"/;
  # ids and raft/db fields: dropped entirely (present or not)
  $l =~ s/"(?:cluster_id|member_id|raft_term)":\d+,?//g;
  $l =~ s/,\}/}/g;
  # fields output: header lines (per response; batching of watch events may differ)
  $l =~ s/^"(?:ClusterID|MemberID|RaftTerm|Revision)" : \d+\n//;
  next if $l eq '';
  $l =~ s/("(?:leader|raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse)"):\d+/$1:X/g;
  $l =~ s/("took"):"[^"]*"/$1:"X"/g;
  $l =~ s/took = [0-9.]+[a-zµ]+/took = X/g;
  $l =~ s/("version"):"[^"]*"/$1:"X"/g;
  $l =~ s/127\.0\.0\.1:\d+/127.0.0.1:PORT/g;
  $l =~ s{unix:///tmp/etcdctl-diff\.\w+/servers/[^/]+/(?:etcd\.sock:1|ours\.sock)}{unix://SOCKET}g;
  $l =~ s{/tmp/etcdctl-diff\.\w+/cases/[^/]+/(?:etcd|ours)\.}{CASEDIR/}g;
  # the keys attached to a lease come in no particular order (a map in etcd)
  $l =~ s/attached keys\(\[([^\]]*)\]\)/"attached keys([" . join(' ', sort split(' ', $1)) . "])"/ge;
  $l =~ s/("keys":\[)([^\]]*)\]/$1 . join(',', sort split(',', $2)) . ']'/ge;
  # lock/election keys end with the (unregistered) session lease id, in hex
  $l =~ s{(cc/\w+/)[0-9a-f]{1,16}\b}{$1<session-lease>}g;
  # lease ids (registered by the case as they were granted)
  $l =~ s/\b([0-9a-f]{16})\b/exists $hex{$1} ? $hex{$1} : $1/ge;
  $l =~ s/("(?:lease|ID|id|Lease|PrevLease)"\s*:\s*)(\d+)/$1 . (exists $dec{$2} ? $dec{$2} : $2)/ge;
  # lease TTL countdown: within 3s of the granted TTL is "fresh"
  $l =~ s/TTL\((\d+)s\), remaining\((-?\d+)s\)/"TTL($1s), remaining(" . (($1 - $2) >= 0 && ($1 - $2) <= 3 ? "~$1" : $2) . "s)"/ge;
  $l =~ s/("ttl":)(-?\d+)(,"granted-ttl":)(\d+)/$1 . (($4 - $2) >= 0 && ($4 - $2) <= 3 ? "~$4" : $2) . "$3$4"/ge;
  unless ($norebase) {
    $l =~ s/("(?:revision|create_revision|mod_revision|compact_revision|CompactRevision)":)(\d+)/$1 . rb($2)/ge;
    $l =~ s/("(?:Revision|CreateRevision|ModRevision|PrevCreateRevision|PrevModRevision|CompactRevision)" : )(\d+)/$1 . rb($2)/ge;
    $l =~ s/(compacted revision )(\d+)/$1 . rb($2)/ge;
    $l =~ s/(progress notify: )(\d+)/$1 . rb($2)/ge;
  }
  print $l;
}
PERL

# ---------------------------------------------------------------- case helpers
# A case is a bash function run twice, once per server, with EP set; its
# stdout+stderr is the transcript. Helpers print the command (in its symbolic
# form, with @N revisions), then its output, then "[exit N]" when non-zero.

# show ARGS...: print an etcdctl command line, shell-quoted
show() {
  local line="\$ etcdctl" a
  for a in "$@"; do line+=" $(printf '%q' "$a")"; done
  echo "$line"
}

# subst STRING: @N -> absolute revision R0+N
subst() { perl -pe 's/@(\d+)/$ENV{R0}+$1/ge' <<<"$1"; }

ctl() { timeout 15 etcdctl --endpoints="$EP" "$@"; }

# e ARGS...: run etcdctl, print command, output and exit status
e() {
  local args=() a rc=0
  for a in "$@"; do args+=("$(subst "$a")"); done
  show "$@"
  ctl "${args[@]}" </dev/null 2>&1 || rc=$?
  ((rc == 0)) || echo "[exit $rc]"
}

# ein ARGS... <<EOF: same, with stdin (txn); @N is substituted in stdin too
ein() {
  local args=() a rc=0 input
  input=$(cat; echo .)  # keep trailing blank lines: they end the txn sections
  input=${input%.}
  for a in "$@"; do args+=("$(subst "$a")"); done
  echo "$(show "$@") <<EOF"
  printf '%sEOF\n' "$input"
  printf '%s' "$input" | perl -pe 's/@(\d+)/$ENV{R0}+$1/ge' | ctl "${args[@]}" 2>&1 || rc=$?
  ((rc == 0)) || echo "[exit $rc]"
}

# equiet ARGS...: print only the command and whether it succeeded
equiet() {
  local rc=0
  show "$@"
  ctl "$@" </dev/null >"$OUT.quiet" 2>&1 || rc=$?
  if ((rc == 0)); then echo "ok"; else echo "[exit $rc]"; grep -v '^{"level"' "$OUT.quiet" || true; fi
}

# efields "f1 f2 ..." ARGS...: run with -w json; print which fields are present
efields() {
  local fields=$1 rc=0 f; shift
  echo "$(show "$@" -w json)   (fields present?)"
  ctl "$@" -w json </dev/null >"$OUT.json" 2>/dev/null || rc=$?
  ((rc == 0)) || echo "[exit $rc]"
  for f in $fields; do
    if grep -q "\"$f\":" "$OUT.json"; then echo "  $f: yes"; else echo "  $f: MISSING"; fi
  done
}

# rev_now: the server's current revision (absolute)
rev_now() {
  local r
  r=$(ctl get rev-probe-key -w json 2>/dev/null | sed -n 's/.*"revision":\([0-9]*\).*/\1/p')
  echo "${r:-0}"
}
# rel_now: current revision relative to the case start
rel_now() { echo $(($(rev_now) - R0)); }

# grant VAR TTL: lease grant, register the id for normalization, set VAR=id
grant() {
  local var=$1 ttl=$2 out id
  echo "\$ etcdctl lease grant $ttl"
  out=$(ctl lease grant "$ttl" 2>&1) || true
  grep -v '^{"level"' <<<"$out" || true
  id=$(sed -n 's/^lease \([0-9a-f]*\) granted.*/\1/p' <<<"$out")
  echo "$id" >>"$OUT.leases"
  printf -v "$var" '%s' "$id"
}

# watch_start NAME ARGS...: `etcdctl watch ARGS` in the background (bounded by timeout)
watch_start() {
  local name=$1 args=() a; shift
  for a in "$@"; do args+=("$(subst "$a")"); done
  show watch "$@" >"$OUT.w.$name.cmd"
  : >"$OUT.w.$name"
  timeout 20 etcdctl --endpoints="$EP" watch "${args[@]}" </dev/null >"$OUT.w.$name" 2>&1 &
  echo $! >"$OUT.w.$name.pid"
  track $!
}

# watch_end NAME REGEX [SECONDS [COUNT]]: wait (bounded) until COUNT lines of
# the output match REGEX, then stop the watcher and print what it saw.
watch_end() {
  local name=$1 re=$2 secs=${3:-8} count=${4:-1} pid rc
  pid=$(cat "$OUT.w.$name.pid")
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    (($(grep -cE -- "$re" "$OUT.w.$name") >= count)) && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 0.3 # anything that should not be there has a moment to show up
  echo "$(cat "$OUT.w.$name.cmd")   (background)"
  if kill -0 "$pid" 2>/dev/null; then
    (($(grep -cE -- "$re" "$OUT.w.$name") >= count)) || echo "[watch: '$re' not seen ${count}x within ${secs}s]"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    untrack "$pid"
    cat "$OUT.w.$name"
    echo "[watch stopped by the test]"
  else
    rc=0; wait "$pid" 2>/dev/null || rc=$?
    untrack "$pid"
    cat "$OUT.w.$name"
    echo "[watch exited by itself: exit $rc]"
  fi
}

# wait_gone KEY SECONDS: poll until KEY is gone (bounded); prints the outcome
wait_gone() {
  local key=$1 secs=$2 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    [[ -z $(ctl get "$key" --keys-only 2>/dev/null) ]] && { echo "[$key is gone]"; return; }
    sleep 0.2
  done
  echo "[$key still there after ${secs}s]"
}

# eputsize KEY BYTES: put a value of BYTES bytes (from stdin)
eputsize() {
  local rc=0
  echo "\$ etcdctl put $1 <$2 bytes on stdin>"
  head -c "$2" /dev/zero | tr '\0' v | ctl put "$1" 2>&1 || rc=$?
  ((rc == 0)) || echo "[exit $rc]"
}

# etxnops N: a txn with N puts in its success branch
etxnops() {
  local rc=0 i
  echo "\$ etcdctl txn <<EOF   (no compares, $1 puts: put tx/1 v ... put tx/$1 v)"
  { echo; for ((i = 1; i <= $1; i++)); do echo "put tx/$i v"; done; echo; echo; } | ctl txn 2>&1 | tail -3 || rc=$?
  ((rc == 0)) || echo "[exit $rc]"
}

no_rebase() { : >"$OUT.norebase"; }
note() { echo "# $*"; }

# ---------------------------------------------------------------- runner

PASSED=() FAILED=()
SHARED=0

run_side() { # SIDE EP FN DIR
  EP=$2
  OUT=$4/$1
  : >"$OUT.leases"
  R0=$(rev_now); export R0
  echo "$R0" >"$OUT.r0"
  "$3" >"$OUT.raw" 2>&1
}

# run_case fresh|shared NAME FN ["known bug" note]
run_case() {
  local mode=$1 name=$2 fn=$3 bug=${4:-}
  if [[ -n $ONLY && ! $name =~ $ONLY ]]; then return 0; fi
  local dir=$TMP/cases/$name t0=$SECONDS pe po s
  mkdir -p "$dir"
  if [[ $mode == fresh ]]; then
    start_pair "$TMP/servers/$name" || { FAILED+=("$name"); echo "FAIL  $name (servers did not start)"; return 0; }
  else
    if ((!SHARED)); then
      start_pair "$TMP/servers/shared" || { echo "shared servers did not start" >&2; exit 1; }
      SHARED=1; SE_EP=$E_EP; SO_EP=$O_EP; SE_PID=$E_PID; SO_PID=$O_PID
    fi
    E_EP=$SE_EP; O_EP=$SO_EP; E_PID=$SE_PID; O_PID=$SO_PID
  fi
  (run_side etcd "$E_EP" "$fn" "$dir") & pe=$!; track $pe
  (run_side ours "$O_EP" "$fn" "$dir") & po=$!; track $po
  wait "$pe" || echo "[case aborted: exit $?]" >>"$dir/etcd.raw"
  wait "$po" || echo "[case aborted: exit $?]" >>"$dir/ours.raw"
  untrack $pe; untrack $po
  kill -0 "$E_PID" 2>/dev/null || echo "[etcd is no longer running after this case]" >>"$dir/etcd.raw"
  kill -0 "$O_PID" 2>/dev/null || echo "[k8s datastore is no longer running after this case]" >>"$dir/ours.raw"
  if [[ $mode == fresh ]]; then stop_pair; fi
  for s in etcd ours; do
    perl "$TMP/normalize.pl" "$(cat "$dir/$s.r0")" "$dir/$s.leases" "$([[ -e $dir/$s.norebase ]] && echo 1 || echo 0)" \
      <"$dir/$s.raw" >"$dir/$s.txt"
  done
  if diff -u --label "etcd ($name)" --label "k8s datastore ($name)" "$dir/etcd.txt" "$dir/ours.txt" >"$dir/diff"; then
    PASSED+=("$name")
    printf 'PASS  %-22s (%ds)\n' "$name" $((SECONDS - t0))
    [[ ${VERBOSE:-0} == 1 ]] && sed 's/^/      /' "$dir/etcd.txt"
  else
    FAILED+=("$name")
    printf 'FAIL  %-22s (%ds)%s\n' "$name" $((SECONDS - t0)) "${bug:+   KNOWN BUG: $bug}"
    sed 's/^/      /' "$dir/diff"
  fi
  return 0
}

# ours-only checks (TLS, unix socket): FN prints "ok ..." / "FAIL ..." lines
run_check() { # NAME FN ["known bug" note]
  local name=$1 fn=$2 bug=${3:-} dir=$TMP/checks/$1 t0=$SECONDS
  if [[ -n $ONLY && ! $name =~ $ONLY ]]; then return 0; fi
  mkdir -p "$dir"
  ("$fn" "$dir") >"$dir/out" 2>&1 || echo "FAIL check aborted (exit $?)" >>"$dir/out"
  if grep -q '^FAIL' "$dir/out" || ! grep -q '^ok' "$dir/out"; then
    FAILED+=("$name")
    printf 'FAIL  %-22s (%ds)%s\n' "$name" $((SECONDS - t0)) "${bug:+   KNOWN BUG: $bug}"
  else
    PASSED+=("$name")
    printf 'PASS  %-22s (%ds)\n' "$name" $((SECONDS - t0))
  fi
  if [[ ${VERBOSE:-0} == 1 ]] || grep -q '^FAIL' "$dir/out"; then sed 's/^/      /' "$dir/out"; fi
  return 0
}

# ---------------------------------------------------------------- cases

case_initial_revision() {
  no_rebase
  note "absolute revisions of a fresh store: etcd starts at revision 1, the first write is 2"
  e get anything -w json
  e put first 1 -w json
  e get first -w json
  e put second 2 -w json
  e get --prefix "" -w json
}

seed_kv() {
  # 10 writes; keys a ab abc b c d e and some updates
  ctl put a 1 >/dev/null; ctl put ab 2 >/dev/null; ctl put abc 3 >/dev/null
  ctl put b 4 >/dev/null; ctl put c 5 >/dev/null; ctl put d 0 >/dev/null
  ctl put e 9 >/dev/null; ctl put b 40 >/dev/null; ctl put a 10 >/dev/null; ctl put b 400 >/dev/null
  e get --prefix "" -w json
}

case_put_get() {
  e put k/one v1
  e put k/two "value with spaces"
  e put k/three $'multi\nline'
  e get k/one
  e get k/missing
  e get k/two -w json
  e get k/three
  e put k/one v1-again
  e get k/one -w json
  e get k/one --print-value-only
  e get k/ --prefix
  e get k/ --prefix --keys-only
  e get k/ --prefix --print-value-only
  e get k/ --prefix -w json
  e get k/ --prefix --consistency=s
  e get k/one --hex
}

case_get_ranges() {
  seed_kv
  e get a c
  e get a c -w json
  e get a ab
  e get b a
  e get a --prefix
  e get ab --prefix -w json
  e get c --from-key
  e get c --from-key --keys-only
  e get "" --from-key --keys-only
  e get --prefix "" --keys-only
  e get a --prefix --limit=2
  e get a --prefix --limit=2 -w json
  e get a --prefix --limit=3 -w json
  e get a --prefix --limit=5 -w json
  e get "" --from-key --limit=1 -w json
  e get a z --limit=4 --keys-only
}

case_get_rev() {
  seed_kv
  e get a --rev=@1 -w json
  e get a --rev=@8
  e get a --rev=@9 -w json
  e get b --rev=@4
  e get b --rev=@7
  e get b --rev=@8
  e get b --rev=@10
  e get "" --prefix --rev=@3 --keys-only
  e get "" --prefix --rev=@5 -w json
  e get "" --prefix --rev=@5 --limit=1 -w json
  e get "" --prefix --rev=@9 --limit=2 --keys-only
  e put a 11
  e del c
  e get c --rev=@10
  e get c --rev=@12
  e get "" --prefix --rev=@11 --keys-only
  e get a --rev=@13
  note "rev <= 0 means the current revision; a negative limit means no limit"
  e get a --rev=0 -w json
  e get a --rev=-1 -w json
  e get "" --prefix --limit=-1 --keys-only
  note "future revision"
  e get a --rev=@14
  e get a --rev=@1000
}

case_sort() {
  seed_kv
  local t o
  for t in KEY VERSION CREATE MODIFY VALUE; do
    for o in ASCEND DESCEND; do
      e get "" --prefix --sort-by=$t --order=$o
    done
  done
  e get "" --prefix --order=DESCEND --keys-only
  e get "" --prefix --sort-by=VALUE --keys-only
  e get "" --prefix --sort-by=MODIFY --order=DESCEND --limit=3 -w json
  e get "" --prefix --sort-by=VERSION --order=DESCEND --limit=2 --keys-only
  e get "" --prefix --sort-by=CREATE --order=ASCEND --limit=2 --keys-only
  e get "" --prefix --sort-by=KEY --order=DESCEND --limit=2 --keys-only
  e get "" --prefix --sort-by=bogus
  e get "" --prefix --sort-by=VALUE --order=DESCEND --limit=2 -w json
  e get "" --prefix --sort-by=VALUE --order=ASCEND --limit=2
  e get b e --sort-by=VERSION --order=DESCEND --limit=1 -w json
  note "ties: one txn writes 5 keys in one revision, with equal values and versions"
  etxn '' $'put s/3 same\nput s/1 same\nput s/5 same\nput s/2 same\nput s/4 same' ''
  for t in CREATE MODIFY VERSION VALUE; do
    for o in ASCEND DESCEND; do
      e get s/ --prefix --sort-by=$t --order=$o --keys-only
    done
  done
  e get s/ --prefix --sort-by=MODIFY --order=DESCEND --limit=2 --keys-only
}

case_prev_kv() {
  e put p/a 1 --prev-kv
  e put p/a 2 --prev-kv
  e put p/a 3 --prev-kv -w json
  e put p/b x --prev-kv -w json
  e put p/c y
  e put p/d z
  e del p/a --prev-kv
  e del p/a --prev-kv
  e del p/b --prev-kv -w json
  e del p/ --prefix --prev-kv
  e put p/e 1
  e del p/e -w json
}

case_delete() {
  seed_kv
  e del a
  e del a
  e del nonexistent -w json
  e del ab --prefix
  e get "" --prefix --keys-only
  e put ab 2
  e put abc 3
  e put a 1
  e del a b
  e get "" --prefix --keys-only
  e del b e -w json
  e get "" --prefix --keys-only
  e put x 1
  e put y 2
  e del d --from-key
  e get "" --prefix -w json
  e del "" --prefix
  e get "" --prefix --keys-only
  e get "" --prefix -w json
  e put f1 1
  e put f2 2
  e del "" --from-key --prev-kv
  e get "" --prefix -w json
}

case_ignore() {
  grant L 100
  e put iv/missing --ignore-value
  e put iv/missing --ignore-lease v
  e put iv/k original --lease="$L"
  e get iv/k -w json
  e put iv/k --ignore-value
  e get iv/k -w json
  e put iv/k newvalue --ignore-lease
  e get iv/k -w json
  e put iv/k --ignore-value --ignore-lease
  e get iv/k -w json
  e put iv/k other
  e put iv/k --ignore-value --prev-kv -w json
  e get iv/k -w json
  note "etcdctl-side argument checks"
  e put iv/k value --ignore-value
  note "a lease together with --ignore-lease: etcd refuses (lease is provided)"
  e put iv/k value --ignore-lease --lease="$L"
  e put iv/k value --ignore-lease --lease=1234abcd
  e get iv/k -w json
  e lease timetolive "$L" --keys
}

# etxn [FLAGS...] COMPARES SUCCESS FAILURE: an interactive-form txn; each of
# the three sections is newline-separated lines (may be empty) and is ended
# by a blank line on stdin, as etcdctl expects.
etxn() {
  local flags=("${@:1:$(($# - 3))}") cmp=${*: -3:1} succ=${*: -2:1} fail=${*: -1:1} input="" sec
  for sec in "$cmp" "$succ" "$fail"; do
    [[ -n $sec ]] && input+="$sec"$'\n'
    input+=$'\n'
  done
  ein txn "${flags[@]}" <<<"${input%$'\n'}"
}

case_txn() {
  e put t/a 1
  e put t/b 2
  e put t/b 3
  note "value compare: success branch, multiple ops"
  etxn 'value("t/a") = "1"' $'put t/c 4\nget t/b\ndel t/a' 'put t/failed yes'
  e get t/ --prefix
  note "value compare: failure branch"
  etxn 'value("t/b") = "nope"' 'put t/x 1' $'put t/f 1\nget t/b\nget t/ --prefix'
  e get t/ --prefix -w json
  note "version / create / mod compares"
  etxn $'version("t/b") = "2"\ncreate("t/b") = "@2"\nmod("t/b") = "@3"' 'put t/vcm ok' 'put t/vcm-failed 1'
  etxn 'version("t/b") > "2"' 'put t/wrong 1' 'put t/vgt-failed 1'
  etxn $'mod("t/b") < "@4"\ncreate("t/c") > "@3"\nvalue("t/c") != "5"' 'put t/all ok' 'put t/all-failed 1'
  etxn $'mod("t/b") > "@4"' 'put t/mod-gt 1' 'put t/mod-gt-failed 1'
  etxn $'value("t/c") < "5"\nvalue("t/c") > "3"' 'put t/between 1' 'put t/between-failed 1'
  note "compares on a missing key: version/create/mod are 0; a value compare always fails"
  etxn $'version("t/nothere") = "0"\ncreate("t/nothere") = "0"\nmod("t/nothere") < "1"' 'put t/nothere created' 'put t/nothere-failed 1'
  etxn 'value("t/none") = ""' 'put t/none-eq 1' 'put t/none-eq-failed 1'
  etxn 'value("t/none") != "x"' 'put t/none-ne 1' 'put t/none-ne-failed 1'
  note "no compares: always succeeds"
  etxn '' 'put t/empty 1' ''
  note "a txn that only reads does not move the revision; one that writes moves it once"
  e get t/b -w json
  etxn '' $'get t/b\nget t/c' ''
  e get t/b -w json
  etxn '' $'put t/m1 1\nput t/m2 2\ndel t/empty' ''
  e get t/ --prefix -w json
  note "json output of a txn with every op"
  etxn -w json 'value("t/b") = "3"' $'put t/j 1 --prev-kv\nget t/b\ndel t/c --prev-kv\nget t/ --prefix --keys-only' ''
  etxn -w json 'value("t/b") = "x"' '' $'get t/zzz\ndel t/zzz\nget t/m --prefix --limit=1'
  note "ops with options"
  etxn '' $'del t/m --prefix --prev-kv\nput t/z 9 --prev-kv' ''
  etxn '' $'del t/m --prefix --prev-kv\nput t/y 9 --prev-kv' ''
  e get "" --prefix -w json
  note "errors"
  etxn '' $'put t/dup 1\nput t/dup 2' ''
  etxn '' $'put t/dup 1\ndel t/dup' ''
  etxn 'value("t/b") = "x"' '' $'put t/dup 1\nput t/dup 2'
  etxn '' 'put "" x' ''
  etxn '' 'del ""' ''
  etxn '' 'get ""' ''
  note "etcd checks every op of both branches before it evaluates the compares"
  etxn '' 'put t/ok 1' 'put "" x'
  etxn 'value("t/b") = "3"' 'put t/ok 1' $'del ""'
  etxn 'value("t/b") = "3"' 'put t/ok 1' $'get ""'
  note "an empty key in a compare"
  etxn 'value("") = "x"' 'put t/ok 1' ''
  e get "" --prefix --keys-only
}

case_compaction() {
  note "compacting at the very first revisions of a fresh store"
  e compaction 0
  e compaction 1
  e compaction 1
  seed_kv
  e compaction @5
  e get a --rev=@4
  e get a --rev=@5 -w json
  e get "" --prefix --rev=@5 --keys-only
  e get a --rev=@6
  e compaction @5
  e compaction @3
  e compaction @1000
  e compaction @10 --physical
  e get a -w json
  e get "" --prefix --rev=@9
  e get "" --prefix --rev=@10 --keys-only
  e put a new
  e get a --rev=@10
  e get a --rev=@11
}

case_watch_history() {
  e put w/a 1
  e put w/b 2
  e put w/a 3
  e put x/other 4
  e del w/b
  e put w/c 5
  e put w/a 6
  watch_start all w/ --prefix --rev=@1
  watch_end all '^6$'
  watch_start one w/a --rev=@1
  watch_end one '^6$'
  watch_start prev w/ --prefix --rev=@2 --prev-kv
  watch_end prev '^6$'
  watch_start fields w/ --prefix --rev=@3 --prev-kv -w fields
  watch_end fields '"Value" : "6"'
  watch_start json w/a --rev=@6 -w json
  watch_end json 'Events'
  watch_start range w/a w/c --rev=@1
  watch_end range '^6$'
  watch_start fromrev w/ --prefix --rev=@5
  watch_end fromrev '^6$'
}

case_watch_live() {
  e put w/a 0
  local next
  next=$(($(rel_now) + 1))
  watch_start pfx w/ --prefix --rev=@$next
  watch_start prev w/a --prev-kv --rev=@$next
  watch_start fields w/ --prefix --prev-kv --rev=@$next -w fields
  note "a watcher without --rev (starts at 'now'; the case waits 1s for it)"
  watch_start now w/ --prefix
  sleep 1
  e put w/a 1
  e put w/b 2
  e put other 3
  e del w/a
  e put w/c 4
  e del w/ --prefix
  e put w/a LAST
  e put w/end END
  watch_end pfx '^END$'
  watch_end prev '^LAST$' 
  watch_end fields '"Value" : "END"'
  watch_end now '^END$'
}

case_watch_compacted() {
  seed_kv
  e compaction @6
  watch_start compacted a --rev=@2
  watch_end compacted 'canceled' 8
  watch_start compactedjson "" --prefix --rev=@5 -w json
  watch_end compactedjson 'canceled' 8
  note "at the compaction revision: ok"
  watch_start atrev "" --prefix --rev=@6
  watch_end atrev '^400$'
}

case_lease() {
  grant L1 60
  grant L2 120
  e put l/a 1 --lease="$L1"
  e put l/b 2 --lease="$L1"
  e put l/c 3 --lease="$L2"
  e put l/d 4
  e get l/ --prefix -w json
  e lease timetolive "$L1"
  e lease timetolive "$L1" --keys
  e lease timetolive "$L2" --keys -w json
  e lease keep-alive --once "$L1"
  e lease keep-alive --once "$L2" -w json
  echo "\$ etcdctl lease list   (sorted)"
  { ctl lease list 2>&1 | grep -v '^{"level"' | sort; } || true
  note "moving a key to another lease, and off leases"
  e put l/a 11 --lease="$L2"
  e put l/b 22
  e put l/e 5 --lease="$L2"
  e del l/e
  e lease timetolive "$L1" --keys
  e lease timetolive "$L2" --keys
  e put l/b 222 --lease="$L1"
  e lease revoke "$L1"
  e get l/ --prefix -w json
  e lease timetolive "$L1" --keys
  e lease revoke "$L1"
  e lease keep-alive --once "$L1"
  e put l/x 1 --lease="$L1"
  e lease revoke "$L2"
  e get l/ --prefix --keys-only
  echo "\$ etcdctl lease list"
  { ctl lease list 2>&1 | grep -v '^{"level"'; } || true
  note "etcd's minimum TTL here is 2s"
  grant LMIN 1
  e lease timetolive "$LMIN"
}

case_lease_expiry() {
  e put ex/plain 1
  local next
  next=$(($(rel_now) + 1))
  note "(the watch covers one key: etcd deletes a lease's keys in map order)"
  watch_start del ex/k1 --rev=@$next --prev-kv -w fields
  grant L 2
  e put ex/k1 v1 --lease="$L"
  e put ex/k2 v2 --lease="$L"
  e lease timetolive "$L" --keys
  wait_gone ex/k1 12
  wait_gone ex/k2 3
  e get ex/ --prefix -w json
  watch_end del 'Type" : DELETE' 5
  e lease timetolive "$L"
  e lease keep-alive --once "$L"
}

case_errors() {
  e put "" value
  e get ""
  e del ""
  e get er/k --rev=1000000
  e compaction 1000000
  e lease revoke 1234abcd
  e lease keep-alive --once 1234abcd
  e lease timetolive 1234abcd
  e put er/k v --lease=1234abcd
  e lease grant 9999999999
  e put er/k --ignore-value
  e put er/k v --ignore-lease
  e get er/k --sort-by=nope
  note "request size: etcd refuses requests over --max-request-bytes (1.5 MiB by default)"
  eputsize er/big 1000000
  eputsize er/huge 1600000
  e get er/ --prefix --keys-only
  note "txn size: at most 128 operations (--max-txn-ops)"
  etxnops 128
  etxnops 129
}

case_maintenance() {
  e put m/a 1
  efields "header revision version dbSize leader raftIndex raftTerm" endpoint status
  equiet endpoint status
  equiet endpoint status -w table
  efields "endpoint health took" endpoint health
  equiet endpoint health
  efields "header members ID name clientURLs" member list
  equiet member list
  equiet member list -w table
  equiet endpoint hashkv
  e alarm list
  e defrag
  e get m/a
  equiet snapshot save "$OUT.snapshot.db"
  if [[ -s $OUT.snapshot.db ]]; then echo "snapshot file: non-empty"; else echo "snapshot file: MISSING"; fi
  e get m/a
}

case_binary_keys() {
  e put $'\xff' ff
  e put $'\xff\xfe' fffe
  e put $'\xfe\xff' feff
  e put 'ключ' 'значение'
  e put $'a\x01b' ctl
  e get --prefix $'\xff' --hex
  e get --prefix $'\xff' -w json
  e get --from-key $'\xfe' --hex --keys-only
  e get "" --prefix --hex --keys-only
  e get 'ключ'
  e get $'\xfe' $'\xff' --hex
  e get $'a\x01' --prefix -w json
  e del --prefix $'\xff'
  e get "" --from-key --keys-only --hex
  watch_start bin --prefix $'\xfe' --rev=@1 --hex
  watch_end bin 'x66.x65.x66.x66' 5
}

case_watch_progress() {
  e put i/a 1
  e put i/b 2
  note "interactive watch: each watcher prints from its own goroutine, so the"
  note "json run (header lines) uses a single watcher to keep the order stable"
  echo "\$ etcdctl watch -i   (stdin: watch i/a --rev=@1; watch --prefix i/ --prev-kv; [put i/c 3]; progress)"
  {
    printf 'watch i/a --rev=%s\n' $((R0 + 1)); sleep 0.5
    printf 'watch --prefix --prev-kv i/\n'; sleep 0.5
    ctl put i/c 3 >/dev/null 2>&1; sleep 0.5
    printf 'progress\n'; sleep 0.7
  } | timeout 8 etcdctl --endpoints="$EP" watch -i 2>&1 || echo "[exit $?]"
  echo "\$ etcdctl watch -i -w json   (stdin: watch --prefix i/ --rev=@2; [put i/d 4]; progress)"
  {
    printf 'watch --prefix i/ --rev=%s\n' $((R0 + 2)); sleep 0.5
    ctl put i/d 4 >/dev/null 2>&1; sleep 0.5
    printf 'progress\n'; sleep 0.7
  } | timeout 8 etcdctl --endpoints="$EP" watch -i -w json 2>&1 || echo "[exit $?]"
}

case_concurrency() {
  e lock cc/mx echo got-the-lock
  echo "\$ etcdctl lock cc/mx ...   (two holders: the second waits for the first)"
  local order=$OUT.lockorder p1 p2 deadline
  : >"$order"
  ctl lock cc/mx -- sh -c "echo first-in >>$order; sleep 1.5; echo first-out >>$order" >/dev/null 2>&1 &
  p1=$!; track $p1
  deadline=$((SECONDS + 5))
  until grep -q first-in "$order" || ((SECONDS > deadline)); do sleep 0.1; done
  ctl lock cc/mx -- sh -c "echo second-in >>$order" >/dev/null 2>&1 &
  p2=$!; track $p2
  wait $p1 || echo "[first holder: exit $?]"
  wait $p2 || echo "[second holder: exit $?]"
  untrack $p1; untrack $p2
  cat "$order"
  e get cc/ --prefix --keys-only
  echo "\$ etcdctl elect cc/el candidate-1   (background)"
  : >"$OUT.elect"
  timeout 10 etcdctl --endpoints="$EP" elect cc/el candidate-1 >"$OUT.elect" 2>&1 &
  p1=$!; track $p1
  deadline=$((SECONDS + 5))
  until grep -q candidate-1 "$OUT.elect" || ((SECONDS > deadline)); do sleep 0.1; done
  echo "\$ etcdctl elect -l cc/el   (observer, stopped after 1.5s)"
  timeout 1.5 etcdctl --endpoints="$EP" elect -l cc/el 2>&1 | grep -v '^{"level"' || true
  e get cc/el --prefix --keys-only
  kill -INT $p1 2>/dev/null || true
  wait $p1 || true
  untrack $p1
  echo "candidate printed:"; grep -v '^{"level"' "$OUT.elect" || true
  e get cc/ --prefix --keys-only
}

summary() { echo "$(wc -l <"$1") lines, $(wc -c <"$1") bytes, md5 $(md5sum <"$1" | cut -c1-32)"; }

case_bulk() {
  local t i
  note "3 txns of 100 puts, then 6 values of 1 MB"
  for t in 1 2 3; do
    { echo; for ((i = 1; i <= 100; i++)); do echo "put bulk/k/$t/$i value-$t-$i"; done; echo; echo; } | ctl txn >/dev/null 2>&1 || echo "txn $t failed"
  done
  for i in 1 2 3 4 5 6; do
    head -c 1000000 /dev/zero | tr '\0' "$i" | ctl put "bulk/big/$i" >/dev/null 2>&1 || echo "put bulk/big/$i failed"
  done
  e get bulk/k/2/50 -w json
  e get bulk/ --prefix --limit=3 --keys-only
  e get bulk/k/ --prefix --limit=2 -w json
  e get bulk/k/ --prefix --sort-by=KEY --order=DESCEND --limit=2 --keys-only
  echo "\$ etcdctl get bulk/ --prefix | lines, md5"
  ctl get bulk/ --prefix >"$OUT.bulk" 2>&1 || true
  summary "$OUT.bulk"
  echo "\$ etcdctl get bulk/ --prefix --rev=@3 | lines, md5"
  ctl get bulk/ --prefix --rev=$((R0 + 3)) >"$OUT.bulk" 2>&1 || true
  summary "$OUT.bulk"
  watch_start all bulk/ --prefix --rev=@1
  local deadline=$((SECONDS + 10))
  until grep -q '^666666' "$OUT.w.all" || ((SECONDS > deadline)); do sleep 0.2; done
  sleep 0.3
  echo "\$ etcdctl watch bulk/ --prefix --rev=@1 | lines, md5"
  kill -TERM "$(cat "$OUT.w.all.pid")" 2>/dev/null || true
  wait "$(cat "$OUT.w.all.pid")" 2>/dev/null || true
  untrack "$(cat "$OUT.w.all.pid")"
  summary "$OUT.w.all"
  e del bulk/ --prefix
  e get bulk/ --prefix -w json
}

# ---------------------------------------------------------------- ours-only checks

check_tls() {
  local d=$1 p pid ep rc
  cd "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.crt -days 2 -subj /CN=other-ca 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=client 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 -extfile client.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.csr -subj /CN=rogue 2>/dev/null
  openssl x509 -req -in rogue.csr -CA other-ca.crt -CAkey other-ca.key -CAcreateserial -out rogue.crt -days 2 -extfile client.ext 2>/dev/null
  echo "certs:" ./*.crt
  free_port p
  "$K8S" datastore --data-dir "$d/data" --listen "https://127.0.0.1:$p" \
    --cert-file server.crt --key-file server.key --trusted-ca-file ca.crt >server.log 2>&1 &
  pid=$!; track "$pid"
  ep=https://127.0.0.1:$p
  if ! wait_ready "k8s datastore (TLS)" "$pid" "$ep" --cacert ca.crt --cert client.crt --key client.key; then
    echo "FAIL datastore with TLS did not become ready"; tail -20 server.log; stop_pid "$pid"; return 0
  fi
  local ok=(--endpoints="$ep" --dial-timeout=2s --command-timeout=3s)
  if timeout 10 etcdctl "${ok[@]}" --cacert ca.crt --cert client.crt --key client.key put tls/k v >cmd.out 2>&1 &&
    [[ $(timeout 10 etcdctl "${ok[@]}" --cacert ca.crt --cert client.crt --key client.key get tls/k --print-value-only 2>&1) == v ]]; then
    echo "ok   put/get with --cacert --cert --key"
  else
    echo "FAIL put/get with --cacert --cert --key"; cat cmd.out
  fi
  # refusals, in parallel (each waits for its dial timeout)
  local quick=(--endpoints="$ep" --dial-timeout=1s --command-timeout=2s)
  timeout 10 etcdctl "${quick[@]}" --cacert ca.crt get tls/k >r1.out 2>&1 & local r1=$!
  timeout 10 etcdctl "${quick[@]}" --cacert ca.crt --cert rogue.crt --key rogue.key get tls/k >r2.out 2>&1 & local r2=$!
  timeout 10 etcdctl "${quick[@]}" --cert client.crt --key client.key get tls/k >r3.out 2>&1 & local r3=$!
  timeout 10 etcdctl --endpoints="http://127.0.0.1:$p" --dial-timeout=1s --command-timeout=2s get tls/k >r4.out 2>&1 & local r4=$!
  local what=("" "without a client cert" "client cert from another CA" "server cert not trusted by the client" "plaintext to the TLS port") i=1 r
  for r in $r1 $r2 $r3 $r4; do
    rc=0; wait "$r" || rc=$?
    if ((rc != 0)); then echo "ok   ${what[$i]}: refused (exit $rc)"; else echo "FAIL ${what[$i]}: accepted"; cat "r$i.out"; fi
    i=$((i + 1))
  done
  stop_pid "$pid"
}

check_unix_socket() {
  local d=$1 p pid sock=$1/ds.sock rc
  free_port p
  "$K8S" datastore --data-dir "$d/data" --listen "unix://$sock" --listen "http://127.0.0.1:$p" >"$d/server.log" 2>&1 &
  pid=$!; track "$pid"
  if ! wait_ready "k8s datastore (unix)" "$pid" "127.0.0.1:$p"; then
    echo "FAIL datastore did not become ready"; tail -20 "$d/server.log"; stop_pid "$pid"; return 0
  fi
  local opts=(--dial-timeout=2s --command-timeout=3s)
  # relative socket path: clientv3 3.4 sends ":authority: ds.sock", and
  # "unix://ds.sock" for endpoint status (vendor/h2); absolute paths are
  # the differential cases' unix spelling
  if (cd "$d" && timeout 10 etcdctl --endpoints="unix://ds.sock" "${opts[@]}" put u/k v >"$d/o" 2>&1) &&
    [[ $(timeout 10 etcdctl --endpoints="127.0.0.1:$p" get u/k --print-value-only 2>&1) == v ]]; then
    echo "ok   put over unix://ds.sock (relative path), read back over tcp"
  else
    echo "FAIL put over unix://ds.sock (relative path)"; grep -v '^{"level"' "$d/o"
  fi
  if (cd "$d" && timeout 10 etcdctl --endpoints="unix://ds.sock" "${opts[@]}" endpoint status >"$d/o" 2>&1); then
    echo "ok   endpoint status over unix://ds.sock (relative path)"
  else
    echo "FAIL endpoint status over unix://ds.sock (relative path)"; grep -v '^{"level"' "$d/o"
  fi
  stop_pid "$pid"
  if [[ -e $sock ]]; then echo "FAIL the socket file is left behind after the datastore stops"; else echo "ok   socket file removed on stop"; fi
}

# ---------------------------------------------------------------- main

echo "etcd:    $(etcd --version | head -1)"
echo "etcdctl: $(etcdctl version | head -1)"
echo "ours:    $SRC_K8S"
echo

run_case fresh initial-revision case_initial_revision
run_case fresh put-get case_put_get
run_case fresh get-ranges case_get_ranges
run_case fresh get-rev case_get_rev
run_case fresh sort case_sort
run_case fresh prev-kv case_prev_kv
run_case fresh delete case_delete
run_case fresh ignore-value-lease case_ignore
run_case fresh txn case_txn
run_case fresh compaction case_compaction
run_case fresh watch-history case_watch_history
run_case fresh watch-live case_watch_live
run_case fresh watch-compacted case_watch_compacted
run_case fresh lease case_lease
run_case fresh lease-expiry case_lease_expiry
run_case fresh binary-keys case_binary_keys
run_case fresh bulk case_bulk
run_case fresh watch-progress case_watch_progress
run_case fresh concurrency case_concurrency
run_case shared errors case_errors
run_case shared maintenance case_maintenance
# The representative set again with the other spellings of the endpoint
# (the full list above uses 127.0.0.1:PORT): endpoint status, hashkv and
# defrag (in maintenance) dial the endpoint as written, so etcdctl 3.4 sends
# it as the HTTP/2 :authority; put/get and watch go through its balancer
# (which sends the socket's path for unix:///).
for SPELL in http unix; do
  run_case fresh "put-get@$SPELL" case_put_get
  run_case fresh "watch-live@$SPELL" case_watch_live
  run_case fresh "maintenance@$SPELL" case_maintenance
done
SPELL=plain
run_check tls check_tls
run_check unix-socket check_unix_socket

if ((SHARED)); then E_PID=$SE_PID O_PID=$SO_PID stop_pair; fi

echo
echo "passed: ${#PASSED[@]}  failed: ${#FAILED[@]}${FAILED[*]:+ (${FAILED[*]})}  time: $((SECONDS - START))s"
((${#FAILED[@]} == 0))
