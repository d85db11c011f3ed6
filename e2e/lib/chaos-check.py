# e2e/lib/chaos-check.py WORK WRITERS WATCHERS SERVERS "HOST..."
# The checks of a chaos run (e2e/chaos.sh: one server; e2e/chaos-ha.sh: three), over the files its writers and
# watchers left in WORK: writer-N.log, watch-N/{log,list-K.json,stream-K.jsonl}, and final-S.json (the final list
# read through server S, from 1). Prints one line per result: "ok …", "FAIL …", "INFO …", "COUNT key value";
# e2e/lib/chaos-check.sh turns them into the script's own ok/fail/say.
import collections, json, os, sys

work, nwriters, nwatchers, nservers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hosts = sys.argv[5].split()
def ok(m): print("ok " + m)
def fail(m): print("FAIL " + m)
def count(k, v): print(f"COUNT {k} {v}")
def show(s): return "absent" if s is None else f"v={s}"

def state_of(path):
    final = json.load(open(path))
    return {it["metadata"]["name"]: (int(it["metadata"]["resourceVersion"]), (it.get("data") or {}).get("v"))
            for it in final["items"]}
fstates = [state_of(f"{work}/final-{s}.json") for s in range(1, nservers + 1)]
for s in range(1, nservers):
    d = [f"{n}: {hosts[0]} {fstates[0].get(n)} {hosts[s]} {fstates[s].get(n)}"
         for n in sorted(set(fstates[0]) | set(fstates[s])) if fstates[0].get(n) != fstates[s].get(n)]
    if d:
        fail(f"the final state read through {hosts[s]} differs from the one through {hosts[0]} in {len(d)} object(s): " + "; ".join(d[:5]))
    else:
        ok(f"the final state read through {hosts[s]} equals the one through {hosts[0]} ({len(fstates[s])} objects)")

# ---- writes
ops = collections.defaultdict(list)   # name -> ops in the writer's order (one writer per name)
acked_rv = []                          # acknowledged create/replace/patch: (t_sent, t_answered, rv, where)
c = collections.Counter()
per_srv = collections.Counter()
bad_rv_order = []
for w in range(1, nwriters + 1):
    recs = {}
    for line in open(f"{work}/writer-{w}.log"):
        f = line.split()
        if len(f) != 9:
            continue
        recs[int(f[0])] = dict(w=w, seq=int(f[0]), name=f[1], op=f[2], res=f[3], rv=f[4], v=f[5],
                               t0=float(f[6]), t1=None if f[7] == "-" else float(f[7]), srv=int(f[8]))
    last = 0
    for seq in sorted(recs):
        r = recs[seq]
        if r["res"] == "pending":      # no outcome logged: the writer was stopped during the request
            r["res"] = "unknown"
        c[r["res"]] += 1
        c["op " + r["op"] + " " + r["res"]] += 1
        per_srv[(r["srv"], r["res"])] += 1
        ops[r["name"]].append(r)
        if r["res"] == "ack" and r["op"] != "delete":
            try:
                rv = int(r["rv"])
            except ValueError:
                fail(f"writer {w} #{seq} ({r['op']} {r['name']}): acknowledged without a resourceVersion ({r['rv']!r})")
                continue
            r["rvi"] = rv
            if rv <= last:
                bad_rv_order.append(f"writer {w} #{seq} {r['op']} {r['name']}: rv {rv} after {last}")
            last = rv
            acked_rv.append((r["t0"], r["t1"], rv, f"writer {w} #{seq} {r['op']} {r['name']} via {hosts[r['srv']]}"))

count("acknowledged", c["ack"]); count("unknown", c["unknown"]); count("rejected", c["rejected"])
count("notsent", c["down"])
print("INFO writes by kind: " + ", ".join(f"{op} {c['op ' + op + ' ack']}/{c['op ' + op + ' unknown']}/"
      f"{c['op ' + op + ' rejected']}/{c['op ' + op + ' down']}" for op in ("create", "replace", "patch", "delete"))
      + " (acknowledged/unknown/rejected/not sent)")
print("INFO writes by server: " + ", ".join(f"{hosts[s]} {per_srv[(s, 'ack')]}/{per_srv[(s, 'unknown')]}/"
      f"{per_srv[(s, 'rejected')]}/{per_srv[(s, 'down')]}" for s in range(nservers))
      + " (acknowledged/unknown/rejected/not sent)")
for s in range(nservers):
    if per_srv[(s, "ack")] == 0:
        fail(f"no write was acknowledged through {hosts[s]}")
if bad_rv_order:
    fail(f"acknowledged resourceVersions went down within a writer ({len(bad_rv_order)}): " + "; ".join(bad_rv_order[:5]))
else:
    ok(f"acknowledged resourceVersions grow within each writer ({len(acked_rv)} writes)")

# real-time order: a write acknowledged before another was sent has the smaller resourceVersion (any servers)
by_end = sorted(acked_rv, key=lambda a: a[1])
by_start = sorted(acked_rv, key=lambda a: a[0])
i, best, viol = 0, None, []
for t0, t1, rv, where in by_start:
    while i < len(by_end) and by_end[i][1] < t0:
        if best is None or by_end[i][2] > best[2]:
            best = by_end[i]
        i += 1
    if best is not None and best[2] >= rv:
        viol.append(f"{where} (rv {rv}) was sent after {best[3]} (rv {best[2]}) was acknowledged")
if viol:
    fail(f"resourceVersions out of real-time order ({len(viol)}): " + "; ".join(viol[:5]))
else:
    ok("resourceVersions follow real time across writers and servers (acknowledged before sent → smaller)")

# each name: walk its history keeping the set of states it may be in; definite answers must fit
def outcome(r):
    return None if r["op"] == "delete" else r["v"]
contra, allowed = [], {}
for name in sorted(ops):
    poss = {None}
    certain = None          # the ack that decides the state, while no unknown write came after it
    for r in ops[name]:
        res, op = r["res"], r["op"]
        if res == "ack":
            need_absent = op == "create"
            if need_absent and None not in poss or not need_absent and poss == {None}:
                contra.append(f"{name}: {op} #{r['seq']} via {hosts[r['srv']]} acknowledged but the object should be "
                              + ("present" if need_absent else "absent") + f" (possible: {sorted(map(show, poss))})")
            poss = {outcome(r)}
            certain = r
        elif res == "unknown":
            poss = poss | {outcome(r)}
            certain = None
        elif res == "rejected":
            present = op == "create"      # AlreadyExists; NotFound otherwise
            fits = {s for s in poss if (s is not None) == present}
            if not fits:
                contra.append(f"{name}: {op} #{r['seq']} via {hosts[r['srv']]} rejected as "
                              + ("AlreadyExists" if present else "NotFound")
                              + f" but the object should be {sorted(map(show, poss))}")
            elif fits != poss:
                poss = fits
                if certain is not None and outcome(certain) not in poss:
                    certain = None
    allowed[name] = (poss, certain)

# the final state through each server
lost_names = set()
for s in range(nservers):
    fstate = fstates[s]
    lost, exact_rv_bad, exact = [], [], 0
    for name in sorted(ops):
        poss, certain = allowed[name]
        got = fstate.get(name)
        gotv = None if got is None else got[1]
        if gotv not in poss:
            lost.append(f"{name}: final {show(gotv)}" + (f" rv {got[0]}" if got else "")
                        + f", expected one of {sorted(map(show, poss))}; last: "
                        + ", ".join(f"#{r['seq']} {r['op']} {r['res']} {r['v']} rv {r['rv']} via {hosts[r['srv']]}"
                                    for r in ops[name][-4:]))
            lost_names.add(name)
        elif certain is not None and certain["op"] != "delete":
            exact += 1
            if got[0] != certain.get("rvi"):
                exact_rv_bad.append(f"{name}: final rv {got[0]}, acknowledged rv {certain['rv']} (#{certain['seq']})")
    stray = sorted(n for n in fstate if n.startswith("cm-") and n not in ops)
    if stray:
        lost.append(f"ConfigMaps nobody wrote: {stray}")
        lost_names.update(stray)
    if lost:
        fail(f"read through {hosts[s]}: {len(lost)} ConfigMap(s) not in the state their acknowledged writes left: "
             + " | ".join(lost[:5]))
    else:
        ok(f"read through {hosts[s]}: every acknowledged write is there: {len(ops)} ConfigMaps in a state their "
           f"writes allow ({sum(1 for n in ops if n in fstate)} present, {sum(1 for n in ops if n not in fstate)} absent)")
    if exact_rv_bad:
        fail(f"read through {hosts[s]}: final resourceVersion differs from the acknowledged one: " + " | ".join(exact_rv_bad[:5]))
    else:
        ok(f"read through {hosts[s]}: {exact} ConfigMaps decided by an acknowledged write carry exactly its resourceVersion")
count("lost", len(lost_names))
count("names", len(ops))
if contra:
    fail(f"{len(contra)} answer(s) contradict the acknowledged history: " + " | ".join(contra[:5]))
else:
    ok("every definite answer (acknowledged, AlreadyExists, NotFound) fits the acknowledged history")

# ---- watches
total_events = total_bookmarks = total_errors = total_streams = 0
final_view = dict(fstates[0])
for w in range(1, nwatchers + 1):
    d = f"{work}/watch-{w}"
    lists, ends = {}, {}
    for line in open(f"{d}/log"):
        f = line.split()
        if f[0] == "LIST":
            lists[int(f[1])] = (int(f[2]), int(f[3]), int(f[5]))
        elif f[0] == "END":
            ends[int(f[1])] = (int(f[2]), f[3])
    backwards, missed, partial, views = [], [], 0, {}
    ev = bm = er = 0
    why = collections.Counter(e[1] for e in ends.values())
    where = collections.Counter(hosts[l[2]] for l in lists.values())
    for n in sorted(lists):
        listrv, gen, srv = lists[n]
        items = json.load(open(f"{d}/list-{n}.json"))["items"]
        view = {it["metadata"]["name"]: (int(it["metadata"]["resourceVersion"]), (it.get("data") or {}).get("v"))
                for it in items}
        last, lastkind, seen = listrv, "list", set()
        try:
            lines = open(f"{d}/stream-{n}.jsonl").read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                partial += 1                # a stream cut in the middle of an event
                continue
            t, o = e.get("type"), e.get("object") or {}
            if t == "ERROR":
                er += 1
                continue
            rv = int(o["metadata"]["resourceVersion"])
            if rv < last or (rv == last and t != "BOOKMARK"):
                backwards.append(f"stream {n} via {hosts[srv]}: {t} {o['metadata'].get('name', '')} rv {rv} after {lastkind} rv {last}")
            last, lastkind = rv, t
            if t == "BOOKMARK":
                bm += 1
                continue
            ev += 1
            seen.add(rv)
            name = o["metadata"]["name"]
            if t in ("ADDED", "MODIFIED"):
                view[name] = (rv, (o.get("data") or {}).get("v"))
            elif t == "DELETED":
                view.pop(name, None)
        views[n] = (gen, view)
        # an event at rv X comes after every event below X: each acknowledged write between the list and the
        # stream's last resourceVersion must be in it
        missed += [f"stream {n} via {hosts[srv]}: {wh} (rv {rv})" for _, _, rv, wh in acked_rv if listrv < rv <= last and rv not in seen]
    total_events += ev; total_bookmarks += bm; total_errors += er; total_streams += len(lists)
    print(f"INFO watcher {w} (home {hosts[(w - 1) % nservers]}): {len(lists)} streams ("
          + ", ".join(f"{where[h]} via {h}" for h in hosts) + f"; ended by themselves {why['ended']}, "
          f"back home {why['home']}, relist {why['relist']}, stop {why['stop']}), {ev} events, {bm} bookmarks, "
          f"{er} ERROR events, {partial} cut lines")
    if backwards:
        fail(f"watcher {w}: resourceVersion went backwards {len(backwards)} time(s): " + "; ".join(backwards[:5]))
    else:
        ok(f"watcher {w}: no resourceVersion went backwards in any of its {len(lists)} streams")
    if missed:
        fail(f"watcher {w}: {len(missed)} acknowledged write(s) missing from streams that went past them: " + "; ".join(missed[:5]))
    else:
        ok(f"watcher {w}: every acknowledged write a stream went past is in it")
    def diff(view):
        out = []
        for n in sorted(set(view) | set(final_view)):
            if view.get(n) != final_view.get(n):
                out.append(f"{n}: watcher {view.get(n)} final {final_view.get(n)}")
        return out
    kept = [n for n in views if views[n][0] == 0]
    relisted = [n for n in views if views[n][0] >= 1]
    if kept:
        dd = diff(views[max(kept)][1])
        if dd:
            fail(f"watcher {w}: the view kept by watching (stream {max(kept)} via {hosts[lists[max(kept)][2]]}) differs "
                 f"from the final state in {len(dd)} object(s): " + "; ".join(dd[:5]))
        else:
            ok(f"watcher {w}: the view kept by watching (stream {max(kept)} via {hosts[lists[max(kept)][2]]}) equals "
               f"the final state ({len(final_view)} objects)")
    if relisted:
        dd = diff(views[max(relisted)][1])
        if dd:
            fail(f"watcher {w}: after the final relist its view differs from the final state: " + "; ".join(dd[:5]))
        else:
            ok(f"watcher {w}: after the final relist (via {hosts[lists[max(relisted)][2]]}) its view equals the final state")
    else:
        fail(f"watcher {w}: no final relist")
count("events", total_events); count("bookmarks", total_bookmarks); count("errors", total_errors)
count("streams", total_streams)
