//! The call graph of the written legs: a bounded breadth-first walk, one indexed query per level.

use super::*;

/// How many levels of the call graph a walk follows at most. Dialpad's graphs are two or three
/// levels deep (entry point → call center → agent); a longer chain is cut here, like a group
/// over the leg bound.
pub const MAX_CALL_GRAPH_DEPTH: usize = 32;

/// The legs connected to a set of written legs, read by a bounded breadth-first walk.
#[derive(Debug, Default)]
pub(super) struct CallGraph {
    /// Every leg read, by `(app_id, call_id)`.
    pub(super) legs: HashMap<(Uuid, i64), LegRow>,
    /// Which ids are connected (legs, and the ids they name that have no leg yet).
    pub(super) groups: UnionFind,
    /// Ids the walk did not follow because their group hit a bound.
    cut: Vec<(Uuid, i64)>,
}

impl CallGraph {
    /// Walks the graph from the legs just `written` (as stored, `crate::calls::upsert_legs`),
    /// one level per query ([`legs_naming`]): the legs with an id of the frontier as their
    /// own, master, entry-point or operator id, then the ids those legs name. The written legs
    /// are not read back: only the legs naming them are looked up. A group stops growing once
    /// it holds more than `max_legs` legs, and each lookup reads at most `max_legs + 1` legs
    /// (in `call_id` order), so an id named by 100k legs costs what one named by a thousand
    /// does.
    pub(super) async fn walk(
        conn: &mut AsyncPgConnection,
        written: Vec<LegRow>,
        max_legs: usize,
    ) -> Result<CallGraph, DbError> {
        let mut graph = CallGraph::default();
        let mut asked: HashSet<(Uuid, i64)> = HashSet::new();
        let mut named = Vec::new();
        let mut frontier: Vec<Lookup> = Vec::new();
        for leg in written {
            let key = (leg.app_id, leg.call_id);
            if asked.insert(key) {
                graph.add(leg, &mut named);
                frontier.push(Lookup { key, known: true });
            }
        }
        frontier.extend(graph.unvisited(named, &mut asked, max_legs));
        for _ in 0..MAX_CALL_GRAPH_DEPTH {
            if frontier.is_empty() {
                break;
            }
            frontier.sort_unstable_by_key(|lookup| lookup.key);
            let found = legs_naming(conn, &frontier, max_legs + 1).await?;
            let mut named = Vec::new();
            for call in found {
                if !graph.legs.contains_key(&(call.app_id, call.call_id)) {
                    graph.add(call, &mut named);
                }
            }
            frontier = graph.unvisited(named, &mut asked, max_legs);
        }
        // Ids still unvisited after the deepest level: their groups were cut too.
        graph
            .cut
            .extend(frontier.into_iter().map(|lookup| lookup.key));
        Ok(graph)
    }

    /// Adds a leg read (or written), joining it to the ids it names, which go to `named`.
    fn add(&mut self, call: LegRow, named: &mut Vec<(Uuid, i64)>) {
        let key = (call.app_id, call.call_id);
        self.groups.find(key);
        for id in call.linked_ids() {
            self.groups.union(key, (call.app_id, id));
            named.push((call.app_id, id));
        }
        self.legs.insert(key, call);
    }

    /// The lookups of the next level: the `named` ids not yet asked for, except those whose
    /// group is already past the bound (recorded as cut).
    fn unvisited(
        &mut self,
        named: Vec<(Uuid, i64)>,
        asked: &mut HashSet<(Uuid, i64)>,
        max_legs: usize,
    ) -> Vec<Lookup> {
        let sizes = self.group_sizes();
        let mut frontier = Vec::new();
        for key in named {
            if !asked.insert(key) {
                continue;
            }
            let group = self.groups.find(key);
            if sizes.get(&group).copied().unwrap_or(0) > max_legs {
                self.cut.push(key);
            } else {
                frontier.push(Lookup { key, known: false });
            }
        }
        frontier
    }

    /// How many legs have been read of each group (by representative).
    fn group_sizes(&mut self) -> HashMap<(Uuid, i64), usize> {
        let mut sizes = HashMap::new();
        let keys: Vec<(Uuid, i64)> = self.legs.keys().copied().collect();
        for key in keys {
            *sizes.entry(self.groups.find(key)).or_default() += 1;
        }
        sizes
    }

    /// The representatives of the groups past the bound: more than `max_legs` legs read, or
    /// ids left unfollowed.
    pub(super) fn oversized_groups(&mut self, max_legs: usize) -> HashSet<(Uuid, i64)> {
        let sizes = self.group_sizes();
        let cut = std::mem::take(&mut self.cut);
        let mut oversized: HashSet<(Uuid, i64)> =
            cut.into_iter().map(|key| self.groups.find(key)).collect();
        oversized.extend(
            sizes
                .into_iter()
                .filter(|(_, size)| *size > max_legs)
                .map(|(group, _)| group),
        );
        oversized
    }
}

/// An id of the walk's frontier: `(app_id, id)`, and whether its own leg is already known
/// (written by this batch), so that only the legs naming it are looked up.
#[derive(Debug, Clone, Copy)]
struct Lookup {
    key: (Uuid, i64),
    known: bool,
}

/// Union-find over `(app_id, id)`; a group's representative is its smallest member.
#[derive(Debug, Default)]
pub(super) struct UnionFind {
    parent: HashMap<(Uuid, i64), (Uuid, i64)>,
}

impl UnionFind {
    pub(super) fn find(&mut self, key: (Uuid, i64)) -> (Uuid, i64) {
        let mut root = key;
        while let Some(parent) = self.parent.get(&root).copied().filter(|p| *p != root) {
            root = parent;
        }
        let mut node = key;
        while node != root {
            let next = self.parent.insert(node, root).unwrap_or(root);
            node = next;
        }
        root
    }

    fn union(&mut self, a: (Uuid, i64), b: (Uuid, i64)) {
        let (a, b) = (self.find(a), self.find(b));
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        self.parent.insert(high, low);
    }
}

/// The legs that have one of `ids` (`(app_id, id)` pairs) as their own (unless already
/// `known`), master, entry-point or operator id: up to four index lookups per id
/// (`calls (app_id, call_id)`, `calls_master_idx`, `calls_entry_point_idx`,
/// `calls_operator_idx`), each reading at most `limit` legs, in `call_id` order. A leg may come
/// back more than once.
///
/// Plan (`EXPLAIN ANALYZE`, one tenant with 1M legs, 750 ids of a worker batch): a Nested Loop
/// over the ids' Function Scan, with an Append of four index scans (the last three under
/// Limit), 7 ms; the rows read are the rows returned. The own-leg lookup sits under a Result
/// with `One-Time Filter: (NOT f.known)`, so it runs only for the ids not known (checked on a
/// 200k-leg tenant: 300 of 750 loops). (The single recursive query this replaces joined on
/// `app_id` with the four columns in one `OR`: a hash join that read every leg of the tenant
/// at each step, 700 ms per batch on a 20k-call tenant.)
async fn legs_naming(
    conn: &mut AsyncPgConnection,
    ids: &[Lookup],
    limit: usize,
) -> Result<Vec<LegRow>, DbError> {
    let app_ids: Vec<Uuid> = ids.iter().map(|lookup| lookup.key.0).collect();
    let call_ids: Vec<i64> = ids.iter().map(|lookup| lookup.key.1).collect();
    let known: Vec<bool> = ids.iter().map(|lookup| lookup.known).collect();
    Ok(diesel::sql_query(
        "SELECT c.* FROM unnest($1::uuid[], $2::bigint[], $3::boolean[]) AS f (app_id, id, known) \
         CROSS JOIN LATERAL ( \
             (SELECT * FROM calls WHERE NOT f.known AND app_id = f.app_id AND call_id = f.id) \
           UNION ALL \
             (SELECT * FROM calls WHERE app_id = f.app_id AND master_call_id = f.id \
              ORDER BY call_id LIMIT $4) \
           UNION ALL \
             (SELECT * FROM calls WHERE app_id = f.app_id AND entry_point_call_id = f.id \
              ORDER BY call_id LIMIT $4) \
           UNION ALL \
             (SELECT * FROM calls WHERE app_id = f.app_id AND operator_call_id = f.id \
              ORDER BY call_id LIMIT $4) \
         ) AS c",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(app_ids)
    .bind::<Array<BigInt>, _>(call_ids)
    .bind::<Array<diesel::sql_types::Bool>, _>(known)
    .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
    // Not prepared (`crate::prepared`): its rows are `calls.*`, so a column added by a
    // migration while the worker runs would fail a prepared copy on every batch.
    .load(conn)
    .await?)
}
