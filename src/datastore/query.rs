//! Reads over a SQLite connection: ranges at the newest or a past revision,
//! the comparisons of a Txn, and history for watches. The same functions run
//! on reader connections and inside the writer's transaction (so a Txn sees
//! its own earlier writes, as in etcd).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};
use tonic::Status;

use super::counts::PageCounts;
use super::errors;
use super::keyrange::KeyRange;
use super::pb::{compare, range_request, Compare, Event, EventType, KeyValue, RangeRequest, RangeResponse};

/// The revisions a read is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Revs {
    pub current: i64,
    pub compacted: i64,
}

pub fn revs(conn: &Connection) -> rusqlite::Result<Revs> {
    Ok(Revs {
        current: super::schema::meta_get(conn, "rev")?.unwrap_or(1),
        // etcd starts "never compacted" at -1, so compacting to 0 is allowed.
        compacted: super::schema::meta_get(conn, "compact_rev")?.unwrap_or(-1),
    })
}

/// Which version of the store a read looks at, resolved once per request
/// (its page and its count read the same way).
enum View {
    /// Today's keys.
    Latest,
    /// The store at log id `bound`: today's keys but `changed` (sorted),
    /// which were written since, or, when `changed` is None (too many
    /// writes since), the range's history.
    Past { bound: i64, changed: Option<Vec<Vec<u8>>> },
    /// A revision before the first write: nothing.
    Nothing,
}

impl View {
    fn at(conn: &Connection, kr: &KeyRange, rev: i64, revs: Revs) -> rusqlite::Result<View> {
        if rev == revs.current {
            return Ok(View::Latest);
        }
        Ok(match id_bound(conn, rev)? {
            Some(bound) => View::Past { bound, changed: changed_since(conn, kr, bound)? },
            None => View::Nothing,
        })
    }
}

/// Columns 0..=4 of every key read, then the log id (5) and the value (6).
const KV_COLUMNS: &str = "l.key, l.create_rev, l.rev, l.version, l.lease, l.id";

fn kv_from_row(row: &Row, value_col: Option<usize>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        create_revision: row.get(1)?,
        mod_revision: row.get(2)?,
        version: row.get(3)?,
        lease: row.get(4)?,
        value: match value_col {
            Some(col) => row.get(col)?,
            None => Vec::new(),
        },
    })
}

/// `kr`'s bounds as the first parameters of a query, and the condition on
/// `col` that uses them.
fn key_params(kr: &KeyRange, col: &str) -> (String, Vec<Value>) {
    let (start, end) = kr.bounds();
    match end {
        Some(end) => (format!("{col} >= ?1 AND {col} < ?2"), vec![Value::Blob(start.to_vec()), Value::Blob(end)]),
        None => (format!("{col} >= ?1"), vec![Value::Blob(start.to_vec())]),
    }
}

/// The newest log id written at or before `rev` (log ids grow with
/// revisions: a row's id is above every row that existed when it was
/// written), so "visible at rev" is "id <= this", which the (key, id)
/// index answers alone. None: nothing was written by then. Written as the
/// last entry of the (rev, id) index, one lookup: `max(id) WHERE rev <= ?`
/// would visit every older row.
fn id_bound(conn: &Connection, rev: i64) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT id FROM log WHERE rev <= ?1 ORDER BY rev DESC, id DESC LIMIT 1")?
        .query_row([rev], |r| r.get(0))
        .optional()
}

fn fetch(conn: &Connection, kr: &KeyRange, view: &View, limit: Option<i64>, with_value: bool)
    -> rusqlite::Result<Vec<KeyValue>> {
    Ok(fetch_with_ids(conn, kr, view, limit, with_value)?.into_iter().map(|(_, kv)| kv).collect())
}

/// The live keys of `kr` in `view`, in key order. Every shape walks an
/// index in key order, so a LIMIT stops the walk: a page of 500 reads about
/// 500 keys, not the range.
fn fetch_with_ids(conn: &Connection, kr: &KeyRange, view: &View, limit: Option<i64>, with_value: bool)
    -> rusqlite::Result<Vec<(i64, KeyValue)>> {
    if kr.is_empty() {
        return Ok(Vec::new());
    }
    match view {
        View::Latest => fetch_latest(conn, kr, limit, with_value),
        View::Past { bound, changed: Some(changed) } => fetch_latest_but(conn, kr, *bound, changed, limit, with_value),
        View::Past { bound, changed: None } => fetch_history(conn, kr, *bound, limit, with_value),
        View::Nothing => Ok(Vec::new()),
    }
}

/// Reading a past revision through today's keys is worth it while this
/// many writes at most came after it (an API server's list pages come
/// within seconds of its first page) and this many of the range's keys at
/// most changed since; past either, the range's history is read instead.
const MAX_WRITES_SINCE: i64 = 20_000;
const MAX_CHANGED_KEYS: usize = 1_000;

/// The keys of `kr` written after log id `bound`, in key order; `None` when
/// there are too many writes or keys to bother (see [`MAX_WRITES_SINCE`]).
/// `NOT INDEXED` makes SQLite walk the rows after `bound` by id instead of
/// the range's history by key.
fn changed_since(conn: &Connection, kr: &KeyRange, bound: i64) -> rusqlite::Result<Option<Vec<Vec<u8>>>> {
    let newest: i64 = conn.prepare_cached("SELECT max(id) FROM log")?.query_row([], |r| r.get(0))?;
    if newest - bound > MAX_WRITES_SINCE {
        return Ok(None);
    }
    let (cond, mut params) = key_params(kr, "key");
    let b = params.len() + 1;
    params.push(Value::Integer(bound));
    let sql = format!("SELECT DISTINCT key FROM log NOT INDEXED WHERE id > ?{b} AND {cond} ORDER BY key");
    let mut stmt = conn.prepare_cached(&sql)?;
    let keys: Vec<Vec<u8>> = stmt.query_map(params_from_iter(params), |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok((keys.len() <= MAX_CHANGED_KEYS).then_some(keys))
}

/// Today's live keys, from `kv`.
fn fetch_latest(conn: &Connection, kr: &KeyRange, limit: Option<i64>, with_value: bool)
    -> rusqlite::Result<Vec<(i64, KeyValue)>> {
    let value = if with_value { ", l.value" } else { "" };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let (cond, params) = key_params(kr, "kv.key");
    let sql = format!("SELECT {KV_COLUMNS}{value} FROM kv JOIN log l ON l.id = kv.id WHERE {cond} ORDER BY kv.key{limit}");
    rows(conn, &sql, params, with_value)
}

/// The live keys at log id `bound` when only `changed` (sorted) were
/// written since: every other key is today what it was then (in `kv` if
/// and only if it was live), so a page is today's keys without the changed
/// ones, merged with the changed keys' versions at `bound`. Reading
/// `limit + changed` of today's keys leaves at least `limit` unchanged ones.
fn fetch_latest_but(conn: &Connection, kr: &KeyRange, bound: i64, changed: &[Vec<u8>], limit: Option<i64>,
    with_value: bool) -> rusqlite::Result<Vec<(i64, KeyValue)>> {
    let mut page = fetch_latest(conn, kr, limit.map(|n| n + changed.len() as i64), with_value)?;
    page.retain(|(_, kv)| changed.binary_search(&kv.key).is_err());
    for key in changed {
        page.extend(fetch_history(conn, &KeyRange::Single(key.clone()), bound, None, with_value)?);
    }
    page.sort_by(|a, b| a.1.key.cmp(&b.1.key));
    if let Some(n) = limit {
        page.truncate(n as usize);
    }
    Ok(page)
}

/// The live keys at log id `bound`, from the range's history: each key's
/// newest row at or below the bound, if not a tombstone.
fn fetch_history(conn: &Connection, kr: &KeyRange, bound: i64, limit: Option<i64>, with_value: bool)
    -> rusqlite::Result<Vec<(i64, KeyValue)>> {
    let value = if with_value { ", l.value" } else { "" };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let (cond, mut params) = key_params(kr, "l.key");
    let b = params.len() + 1;
    params.push(Value::Integer(bound));
    let sql = format!(
        "SELECT {KV_COLUMNS}{value} FROM log l WHERE {cond} AND l.id <= ?{b}
         AND l.id = (SELECT max(id) FROM log WHERE key = l.key AND id <= ?{b}) AND l.deleted = 0
         ORDER BY l.key{limit}"
    );
    rows(conn, &sql, params, with_value)
}

fn rows(conn: &Connection, sql: &str, params: Vec<Value>, with_value: bool) -> rusqlite::Result<Vec<(i64, KeyValue)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let value_col = with_value.then_some(6);
    let rows = stmt.query_map(params_from_iter(params), |r| Ok((r.get(5)?, kv_from_row(r, value_col)?)))?;
    rows.collect()
}

/// How many live keys `kr` holds in `view`, read as [`fetch_with_ids`] reads.
fn count(conn: &Connection, kr: &KeyRange, view: &View) -> rusqlite::Result<i64> {
    if kr.is_empty() {
        return Ok(0);
    }
    match view {
        View::Latest => count_latest(conn, kr),
        View::Past { bound, changed: Some(changed) } => count_latest_but(conn, kr, *bound, changed),
        View::Past { bound, changed: None } => count_history(conn, kr, *bound),
        View::Nothing => Ok(0),
    }
}

/// The kv table holds exactly the live keys.
fn count_latest(conn: &Connection, kr: &KeyRange) -> rusqlite::Result<i64> {
    let (cond, params) = key_params(kr, "key");
    conn.prepare_cached(&format!("SELECT count(*) FROM kv WHERE {cond}"))?
        .query_row(params_from_iter(params), |r| r.get(0))
}

/// The live keys at log id `bound` when only `changed` were written since.
fn count_latest_but(conn: &Connection, kr: &KeyRange, bound: i64, changed: &[Vec<u8>]) -> rusqlite::Result<i64> {
    let mut n = count_latest(conn, kr)?;
    for key in changed {
        let single = KeyRange::Single(key.clone());
        n += count_history(conn, &single, bound)? - count_latest(conn, &single)?;
    }
    Ok(n)
}

/// The live keys at log id `bound`, from the history of the range.
fn count_history(conn: &Connection, kr: &KeyRange, bound: i64) -> rusqlite::Result<i64> {
    let (cond, mut params) = key_params(kr, "key");
    let b = params.len() + 1;
    params.push(Value::Integer(bound));
    let sql = format!(
        "SELECT count(*) FROM (SELECT max(id) AS mid FROM log WHERE {cond} AND id <= ?{b} GROUP BY key) m
         JOIN log l ON l.id = m.mid WHERE l.deleted = 0"
    );
    conn.prepare_cached(&sql)?.query_row(params_from_iter(params), |r| r.get(0))
}

/// Live keys in a range at the newest revision.
pub fn latest(conn: &Connection, kr: &KeyRange) -> rusqlite::Result<Vec<KeyValue>> {
    fetch(conn, kr, &View::Latest, None, true)
}

/// Live keys in a range with the log id of their newest version.
pub fn latest_with_ids(conn: &Connection, kr: &KeyRange) -> rusqlite::Result<Vec<(i64, KeyValue)>> {
    fetch_with_ids(conn, kr, &View::Latest, None, true)
}

/// etcd's Range, including its limit/sort/filter rules: when sorting or
/// filtering, everything is fetched first and the limit applies afterwards;
/// `count` is the size of the whole range, unaffected by limit and filters.
/// `pages`: the counts earlier pages of a paged range left (see
/// [`PageCounts`]); None for reads that may see uncommitted writes (a Txn's).
pub fn range(conn: &Connection, req: &RangeRequest, revs: Revs, pages: Option<&PageCounts>)
    -> Result<RangeResponse, Status> {
    if req.key.is_empty() {
        return Err(errors::empty_key());
    }
    let rev = if req.revision <= 0 { revs.current } else { req.revision };
    if rev > revs.current {
        return Err(errors::future_rev());
    }
    if rev < revs.compacted {
        return Err(errors::compacted());
    }
    let kr = KeyRange::new(&req.key, &req.range_end);
    let storage = |e: rusqlite::Error| errors::storage(&e);
    let view = View::at(conn, &kr, rev, revs).map_err(storage)?;
    let mut resp = RangeResponse::default();
    if req.count_only {
        resp.count = count(conn, &kr, &view).map_err(storage)?;
        return Ok(resp);
    }

    let order = sort_order(req);
    let filtered = req.min_mod_revision != 0 || req.max_mod_revision != 0
        || req.min_create_revision != 0 || req.max_create_revision != 0;
    let fetch_limit = (req.limit > 0 && order.is_none() && !filtered).then(|| req.limit + 1);
    // Sorting by value needs the values even when only keys are returned.
    let by_value = matches!(order, Some((range_request::SortTarget::Value, _)));
    let mut kvs = fetch(conn, &kr, &view, fetch_limit, !req.keys_only || by_value).map_err(storage)?;
    resp.count = match fetch_limit {
        Some(n) if kvs.len() as i64 >= n => {
            let total = match pages.and_then(|p| p.take(&req.key, &req.range_end, rev)) {
                Some(total) => total,
                None => count(conn, &kr, &view).map_err(storage)?,
            };
            if let Some(p) = pages {
                p.after_page(&kvs[req.limit as usize - 1].key, &req.range_end, rev, total, req.limit);
            }
            total
        }
        _ => kvs.len() as i64,
    };
    if filtered {
        kvs.retain(|kv| passes_filters(req, kv));
    }
    if let Some((target, descending)) = order {
        sort(&mut kvs, target, descending);
    }
    if req.keys_only && by_value {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        resp.more = true;
    }
    resp.kvs = kvs;
    Ok(resp)
}

/// `None` when the natural key order already answers the request.
fn sort_order(req: &RangeRequest) -> Option<(range_request::SortTarget, bool)> {
    use range_request::{SortOrder, SortTarget};
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    match SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None) {
        SortOrder::None if target == SortTarget::Key => None,
        SortOrder::None | SortOrder::Ascend => {
            (target != SortTarget::Key).then_some((target, false))
        }
        SortOrder::Descend => Some((target, true)),
    }
}

fn sort(kvs: &mut [KeyValue], target: range_request::SortTarget, descending: bool) {
    use range_request::SortTarget::*;
    kvs.sort_by(|a, b| {
        let ord = match target {
            Key => a.key.cmp(&b.key),
            Version => a.version.cmp(&b.version),
            Create => a.create_revision.cmp(&b.create_revision),
            Mod => a.mod_revision.cmp(&b.mod_revision),
            Value => a.value.cmp(&b.value),
        };
        if descending { ord.reverse() } else { ord }
    });
}

fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    let above = |min: i64, v: i64| min == 0 || v >= min;
    let below = |max: i64, v: i64| max == 0 || v <= max;
    above(req.min_mod_revision, kv.mod_revision)
        && below(req.max_mod_revision, kv.mod_revision)
        && above(req.min_create_revision, kv.create_revision)
        && below(req.max_create_revision, kv.create_revision)
}

/// A Txn guard: every key in the compare's range must satisfy it; a missing
/// key compares as a zero KeyValue, except that a value compare fails.
pub fn compare(conn: &Connection, c: &Compare) -> rusqlite::Result<bool> {
    let kr = KeyRange::new(&c.key, &c.range_end);
    let kvs = latest(conn, &kr)?;
    let target = compare::CompareTarget::try_from(c.target).unwrap_or(compare::CompareTarget::Version);
    if kvs.is_empty() {
        return Ok(target != compare::CompareTarget::Value && compare_kv(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let int = |v: i64| match &c.target_union {
        Some(TargetUnion::Version(x) | TargetUnion::CreateRevision(x)
            | TargetUnion::ModRevision(x) | TargetUnion::Lease(x)) => v.cmp(x),
        _ => v.cmp(&0),
    };
    let ord = match CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version) {
        CompareTarget::Version => int(kv.version),
        CompareTarget::Create => int(kv.create_revision),
        CompareTarget::Mod => int(kv.mod_revision),
        CompareTarget::Lease => int(kv.lease),
        CompareTarget::Value => match &c.target_union {
            Some(TargetUnion::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
            _ => kv.value.as_slice().cmp(&[]),
        },
    };
    use std::cmp::Ordering::*;
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Equal,
        CompareResult::NotEqual => ord != Equal,
        CompareResult::Greater => ord == Greater,
        CompareResult::Less => ord == Less,
    }
}

/// Keys attached to a lease.
pub fn lease_keys(conn: &Connection, lease: i64) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")?;
    let rows = stmt.query_map([lease], |r| r.get(0))?;
    rows.collect()
}

/// History events with revisions in `[from, to]` for keys in `kr`, in
/// order, each with its previous version when that is still kept. Pages
/// hold at most `limit` events; pass the returned cursor to get the next
/// page (None: this was the last).
pub fn history(conn: &Connection, kr: &KeyRange, from: i64, to: i64, after: i64, limit: usize)
    -> rusqlite::Result<(Vec<Event>, Option<i64>)> {
    use rusqlite::types::Value;
    let (start, end) = kr.bounds();
    let mut params = vec![
        Value::Integer(from),
        Value::Integer(to),
        Value::Integer(after),
        Value::Blob(start.to_vec()),
    ];
    let mut key_cond = "l.key >= ?4".to_string();
    if let Some(end) = end {
        key_cond.push_str(" AND l.key < ?5");
        params.push(Value::Blob(end));
    }
    let sql = format!(
        "SELECT l.key, l.create_rev, l.rev, l.version, l.lease, l.value, l.deleted,
                p.key, p.create_rev, p.rev, p.version, p.lease, p.value, l.id
         FROM log l LEFT JOIN log p ON p.id = l.prev_id
         WHERE l.rev >= ?1 AND l.rev <= ?2 AND l.id > ?3 AND {key_cond}
         ORDER BY l.id LIMIT {limit}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut events = Vec::new();
    let mut last_id = after;
    for row in stmt.query_map(params_from_iter(params.clone()), |r| Ok((r.get::<_, i64>(13)?, event_from_row(r)?)))? {
        let (id, ev) = row?;
        last_id = id;
        events.push(ev);
    }
    if events.len() < limit {
        return Ok((events, None));
    }
    // A full page ends on a whole revision: watchers get each revision's
    // events in one response, as etcd sends them.
    let last_rev = events.last().and_then(|e| e.kv.as_ref()).map_or(to, |kv| kv.mod_revision);
    params[0] = Value::Integer(last_rev);
    params[1] = Value::Integer(last_rev);
    params[2] = Value::Integer(last_id);
    let rest_sql = sql.replace(&format!(" LIMIT {limit}"), "");
    let mut rest = conn.prepare_cached(&rest_sql)?;
    for row in rest.query_map(params_from_iter(params), |r| Ok((r.get::<_, i64>(13)?, event_from_row(r)?)))? {
        let (id, ev) = row?;
        last_id = id;
        events.push(ev);
    }
    Ok((events, Some(last_id)))
}

fn event_from_row(r: &Row) -> rusqlite::Result<Event> {
    let deleted: bool = r.get(6)?;
    let kv = if deleted {
        KeyValue { key: r.get(0)?, mod_revision: r.get(2)?, ..Default::default() }
    } else {
        kv_from_row(r, Some(5))?
    };
    let prev_kv = match r.get::<_, Option<Vec<u8>>>(7)? {
        Some(key) => Some(KeyValue {
            key,
            create_revision: r.get(8)?,
            mod_revision: r.get(9)?,
            version: r.get(10)?,
            lease: r.get(11)?,
            value: r.get(12)?,
        }),
        None => None,
    };
    let kind = if deleted { EventType::Delete } else { EventType::Put };
    Ok(Event { r#type: kind as i32, kv: Some(kv), prev_kv })
}

#[cfg(test)]
mod tests {
    use super::super::apply::Applier;
    use super::super::pb::{DeleteRangeRequest, PutRequest};
    use super::super::schema;
    use super::*;

    /// A pseudo-random history of puts, deletes and re-creates over 30 keys.
    fn store_with_history(dir: &std::path::Path) -> Connection {
        let conn = schema::open_writer(dir).unwrap();
        let mut seed: u64 = 11;
        for _ in 0..300 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = format!("c/{:02}", (seed >> 33) % 30).into_bytes();
            let mut a = Applier::new(&conn, revs(&conn).unwrap());
            if (seed >> 20) % 3 == 0 {
                a.delete(&DeleteRangeRequest { key, ..Default::default() }).unwrap();
            } else {
                a.put(&PutRequest { key, value: b"v".to_vec(), ..Default::default() }).unwrap();
            }
            schema::meta_set(&conn, "rev", a.rev()).unwrap();
        }
        conn
    }

    /// Reading a past revision through today's keys and the ones changed
    /// since gives what reading the range's history gives, at every log id,
    /// for pages of every size.
    #[test]
    fn a_past_revision_read_through_todays_keys_matches_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_with_history(dir.path());
        let newest: i64 = conn.query_row("SELECT max(id) FROM log", [], |r| r.get(0)).unwrap();
        let ranges = [KeyRange::new(b"c/", b"c0"), KeyRange::new(b"c/1", b"c/2"), KeyRange::new(b"c/05", b"")];
        for kr in &ranges {
            for bound in 1..=newest {
                let changed = changed_since(&conn, kr, bound).unwrap().expect("few writes");
                assert_eq!(
                    count_latest_but(&conn, kr, bound, &changed).unwrap(),
                    count_history(&conn, kr, bound).unwrap(),
                    "count of {kr:?} at log id {bound}"
                );
                for limit in [None, Some(1), Some(3), Some(7)] {
                    assert_eq!(
                        fetch_latest_but(&conn, kr, bound, &changed, limit, true).unwrap(),
                        fetch_history(&conn, kr, bound, limit, true).unwrap(),
                        "{kr:?} at log id {bound}, limit {limit:?}"
                    );
                }
            }
        }
    }

    /// Paging through a range as the API server does (the next page from
    /// the last key + "\0", later pages at the first page's revision), the
    /// counts the pages leave for each other are the counts of a fresh walk,
    /// at every revision, for pages of every size; a revision that never
    /// paged (or a Txn, which passes none) counts afresh.
    #[test]
    fn paged_ranges_count_what_a_fresh_count_does() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_with_history(dir.path());
        let revs = revs(&conn).unwrap();
        let pages = PageCounts::default();
        for rev in 1..=revs.current {
            for limit in [1, 2, 5] {
                let mut req = RangeRequest { key: b"c/".to_vec(), range_end: b"c0".to_vec(), revision: rev, limit, ..Default::default() };
                loop {
                    let kept = range(&conn, &req, revs, Some(&pages)).unwrap();
                    let fresh = range(&conn, &req, revs, None).unwrap();
                    assert_eq!((kept.count, &kept.kvs, kept.more), (fresh.count, &fresh.kvs, fresh.more), "rev {rev}, limit {limit}, from {:?}", req.key);
                    let Some(last) = kept.kvs.last().filter(|_| kept.more) else { break };
                    req.key = [last.key.as_slice(), b"\0"].concat();
                }
            }
        }
    }

    #[test]
    fn the_id_bound_is_the_newest_row_at_or_before_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_with_history(dir.path());
        let current = revs(&conn).unwrap().current;
        for rev in 0..=current {
            let scan: Option<i64> = conn.query_row("SELECT max(id) FROM log WHERE rev <= ?1", [rev], |r| r.get(0)).unwrap();
            assert_eq!(id_bound(&conn, rev).unwrap(), scan, "rev {rev}");
        }
    }
}
