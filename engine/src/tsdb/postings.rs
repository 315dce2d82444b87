//! The head's inverted index: for every label name and value, the sorted list of series holding
//! that pair, plus the list of all series; and the set operations queries plan with (Prometheus
//! `index.Intersect`, `Merge`, `Without`, and `PostingsForMatchers` in tsdb/querier.go).
//!
//! Postings are sorted `u32` series references (the head hands out references below 2^32).
//! Label names and values are symbol ids (`tsdb::symbols`). Invariant: every list is sorted and
//! free of duplicates. Concurrency: owned by the head behind one `RwLock`; writers are series
//! creation and removal only, so queries share it with appends.

use std::collections::HashMap;

use super::symbols::Symbols;
use crate::model::{MatchKind, Matcher, RegexShape};

/// A sorted list of series references.
pub type List = Vec<u32>;

/// Label pair -> series.
#[derive(Default)]
pub struct Postings {
    // Lookup and per-name enumeration only; output is always sorted afterwards, so hash order
    // never reaches a caller.
    by_name: HashMap<u32, HashMap<u32, List>>,
    all: List,
}

fn insert_sorted(list: &mut List, series_ref: u32) {
    match list.last() {
        Some(&last) if last > series_ref => {
            if let Err(index) = list.binary_search(&series_ref) {
                list.insert(index, series_ref);
            }
        }
        Some(&last) if last == series_ref => {}
        _ => list.push(series_ref),
    }
}

fn remove_sorted(list: &mut List, series_ref: u32) {
    if let Ok(index) = list.binary_search(&series_ref) {
        list.remove(index);
    }
}

impl Postings {
    /// Adds a series with label pairs `(name id, value id)`.
    pub fn add(&mut self, series_ref: u32, label_ids: &[u32]) {
        for pair in label_ids.chunks_exact(2) {
            insert_sorted(self.by_name.entry(pair[0]).or_default().entry(pair[1]).or_default(), series_ref);
        }
        insert_sorted(&mut self.all, series_ref);
    }

    /// Removes a series (garbage collection).
    pub fn remove(&mut self, series_ref: u32, label_ids: &[u32]) {
        for pair in label_ids.chunks_exact(2) {
            if let Some(values) = self.by_name.get_mut(&pair[0]) {
                if let Some(list) = values.get_mut(&pair[1]) {
                    remove_sorted(list, series_ref);
                    if list.is_empty() {
                        values.remove(&pair[1]);
                    }
                }
                if values.is_empty() {
                    self.by_name.remove(&pair[0]);
                }
            }
        }
        remove_sorted(&mut self.all, series_ref);
    }

    /// Removes many series at once (head truncation): each touched list is filtered once, so
    /// removing `n` series from lists of length `m` costs `O(m + n log n)`, not `O(n * m)`.
    /// `removed` holds `(series ref, label pairs)`.
    pub fn remove_many(&mut self, removed: &[(u32, Box<[u32]>)]) {
        // Lookup only; never iterated into output.
        let mut by_pair: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        for (series_ref, label_ids) in removed {
            for pair in label_ids.chunks_exact(2) {
                by_pair.entry((pair[0], pair[1])).or_default().push(*series_ref);
            }
        }
        for ((name_id, value_id), mut refs) in by_pair {
            refs.sort_unstable();
            let Some(values) = self.by_name.get_mut(&name_id) else { continue };
            if let Some(list) = values.get_mut(&value_id) {
                *list = subtract(list, &refs);
                if list.is_empty() {
                    values.remove(&value_id);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&name_id);
            }
        }
        let mut all_removed: Vec<u32> = removed.iter().map(|(series_ref, _)| *series_ref).collect();
        all_removed.sort_unstable();
        self.all = subtract(&self.all, &all_removed);
    }

    /// Every series.
    pub fn all(&self) -> &[u32] {
        &self.all
    }

    /// Series with `name`=`value` (ids).
    pub fn get(&self, name_id: u32, value_id: u32) -> &[u32] {
        self.by_name.get(&name_id).and_then(|values| values.get(&value_id)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Label name ids present.
    pub fn name_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_name.keys().copied()
    }

    /// `(value id, postings)` of label `name_id`, in no particular order.
    pub fn values(&self, name_id: u32) -> impl Iterator<Item = (u32, &List)> + '_ {
        self.by_name.get(&name_id).into_iter().flat_map(|values| values.iter().map(|(value, list)| (*value, list)))
    }

    /// Distinct label pairs.
    pub fn pair_count(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }

    /// Series matching every matcher, sorted by reference. The plan: intersect the postings of
    /// the matchers that do not match the empty string (each a union over the values it matches,
    /// with shortcuts for literals, sets and prefixes); subtract, for each matcher that does match
    /// the empty string, the series whose value it rejects; start from all series only when no
    /// matcher is positive.
    pub fn select(&self, symbols: &Symbols, matchers: &[Matcher]) -> List {
        let mut positives: Vec<List> = Vec::new();
        let mut negatives: Vec<List> = Vec::new();
        for matcher in matchers {
            let Some(name_id) = symbols.id(&matcher.name) else {
                // No series has the label: it matches only if the matcher accepts "".
                if matcher.matches_empty() {
                    continue;
                }
                return List::new();
            };
            if matcher.matches_empty() {
                negatives.push(self.rejected_by(symbols, name_id, matcher));
            } else {
                let list = self.accepted_by(symbols, name_id, matcher);
                if list.is_empty() {
                    return List::new();
                }
                positives.push(list);
            }
        }
        // Smallest first keeps every intersection step small.
        positives.sort_by_key(Vec::len);
        let mut result = match positives.split_first() {
            Some((first, rest)) => rest.iter().fold(first.clone(), |acc, list| intersect(&acc, list)),
            None => self.all.clone(),
        };
        for list in &negatives {
            if result.is_empty() {
                break;
            }
            result = subtract(&result, list);
        }
        result
    }

    /// Series with `name_id` = `value`.
    fn literal(&self, symbols: &Symbols, name_id: u32, value: &str) -> List {
        symbols.id(value).map(|value_id| self.get(name_id, value_id).to_vec()).unwrap_or_default()
    }

    /// Series whose value of `name_id` is one of `set`.
    fn set_union(&self, symbols: &Symbols, name_id: u32, set: &[String]) -> List {
        let lists: Vec<&[u32]> =
            set.iter().filter_map(|member| symbols.id(member)).map(|value_id| self.get(name_id, value_id)).collect();
        union(&lists)
    }

    /// Series whose value of `name_id` satisfies `keep` (by value id).
    fn union_where(&self, name_id: u32, keep: impl Fn(u32) -> bool) -> List {
        let lists: Vec<&[u32]> =
            self.values(name_id).filter(|(value_id, _)| keep(*value_id)).map(|(_, list)| list.as_slice()).collect();
        union(&lists)
    }

    /// Series whose value of `name_id` the (non-empty-matching) matcher accepts.
    fn accepted_by(&self, symbols: &Symbols, name_id: u32, matcher: &Matcher) -> List {
        match (matcher.kind, matcher.regex_shape()) {
            (MatchKind::Equal, _) => self.literal(symbols, name_id, &matcher.value),
            (MatchKind::Regex, RegexShape::Set(set)) => self.set_union(symbols, name_id, set),
            (MatchKind::Regex, RegexShape::Prefix(prefix)) => {
                self.union_where(name_id, |value_id| symbols.get(value_id).starts_with(prefix.as_str()))
            }
            _ => self.union_where(name_id, |value_id| matcher.matches(symbols.get(value_id))),
        }
    }

    /// Series that have label `name_id` with a value the (empty-matching) matcher rejects.
    fn rejected_by(&self, symbols: &Symbols, name_id: u32, matcher: &Matcher) -> List {
        match (matcher.kind, matcher.regex_shape()) {
            (MatchKind::NotEqual, _) => self.literal(symbols, name_id, &matcher.value),
            (MatchKind::Regex, RegexShape::Any) => List::new(),
            (MatchKind::NotRegex, RegexShape::Set(set)) if !set.iter().any(String::is_empty) => {
                self.set_union(symbols, name_id, set)
            }
            _ => self.union_where(name_id, |value_id| !matcher.matches(symbols.get(value_id))),
        }
    }
}

/// Intersection of two sorted lists.
pub fn intersect(a: &[u32], b: &[u32]) -> List {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len().min(b.len())));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the elements of `b` (both sorted).
pub fn subtract(a: &[u32], b: &[u32]) -> List {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len()));
    while i < a.len() {
        if j >= b.len() {
            out.extend_from_slice(&a[i..]);
            break;
        }
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Union of sorted lists, sorted and without duplicates.
pub fn union(lists: &[&[u32]]) -> List {
    match lists {
        [] => List::new(),
        [only] => only.to_vec(),
        _ => {
            let mut out: List = Vec::with_capacity(lists.iter().map(|list| list.len()).sum());
            for list in lists {
                out.extend_from_slice(list);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::symbols::SymbolTable;
    use proptest::prelude::*;

    fn index(series: &[(u32, &[(&str, &str)])]) -> (SymbolTable, Postings) {
        let symbols = SymbolTable::default();
        let mut postings = Postings::default();
        for (series_ref, labels) in series {
            let ids: Vec<u32> =
                labels.iter().flat_map(|(name, value)| [symbols.intern(name), symbols.intern(value)]).collect();
            postings.add(*series_ref, &ids);
        }
        (symbols, postings)
    }

    const SERIES: &[(u32, &[(&str, &str)])] = &[
        (1, &[("__name__", "up"), ("job", "node"), ("env", "prod")]),
        (2, &[("__name__", "up"), ("job", "api")]),
        (3, &[("__name__", "requests"), ("job", "api"), ("env", "dev")]),
        (4, &[("__name__", "requests_total"), ("job", "web"), ("env", "prod")]),
    ];

    #[track_caller]
    fn check(matchers: &[(MatchKind, &str, &str)], expected: &[u32]) {
        let (symbols, postings) = index(SERIES);
        let matchers: Vec<Matcher> =
            matchers.iter().map(|(kind, name, value)| Matcher::new(*kind, name, value).unwrap()).collect();
        assert_eq!(postings.select(&symbols.read(), &matchers), expected, "{matchers:?}");
    }

    #[test]
    fn every_matcher_kind_and_shape() {
        use MatchKind::*;
        check(&[(Equal, "__name__", "up")], &[1, 2]);
        check(&[(Equal, "__name__", "up"), (Equal, "job", "api")], &[2]);
        check(&[(NotEqual, "job", "api")], &[1, 4]);
        check(&[(Regex, "job", "a.*")], &[2, 3]);
        check(&[(Regex, "job", "api|web")], &[2, 3, 4]);
        check(&[(Regex, "__name__", "requests.*")], &[3, 4]);
        check(&[(Regex, "job", ".+")], &[1, 2, 3, 4]);
        check(&[(Regex, "job", ".*")], &[1, 2, 3, 4]);
        check(&[(Regex, "job", "n[o]de")], &[1]);
        check(&[(NotRegex, "job", "a.*")], &[1, 4]);
        check(&[(NotRegex, "job", "api|node")], &[4]);
        // Matchers that accept the empty string select series without the label.
        check(&[(NotEqual, "env", "prod")], &[2, 3]);
        check(&[(Equal, "env", "")], &[2]);
        check(&[(NotEqual, "env", "")], &[1, 3, 4]);
        check(&[(Regex, "env", "dev|")], &[2, 3]);
        check(&[(NotRegex, "env", "dev|")], &[1, 4]);
        check(&[(Equal, "missing", "")], &[1, 2, 3, 4]);
        check(&[(Regex, "missing", ".+")], &[]);
        check(&[(Equal, "job", "missing")], &[]);
        check(&[(NotEqual, "job", "missing")], &[1, 2, 3, 4]);
        check(&[], &[1, 2, 3, 4]);
    }

    #[test]
    fn removal_drops_empty_lists() {
        let (symbols, mut postings) = index(SERIES);
        let ids: Vec<u32> = SERIES[1].1.iter().flat_map(|(n, v)| [symbols.intern(n), symbols.intern(v)]).collect();
        postings.remove(2, &ids);
        assert_eq!(postings.all(), &[1, 3, 4]);
        check(&[(MatchKind::Equal, "job", "api")], &[2, 3]); // a fresh index still has it
        let matchers = [Matcher::new(MatchKind::Equal, "job", "api").unwrap()];
        assert_eq!(postings.select(&symbols.read(), &matchers), vec![3]);
    }

    proptest! {
        #[test]
        fn set_operations_agree_with_btreeset(
            a in proptest::collection::btree_set(0_u32..200, 0..60),
            b in proptest::collection::btree_set(0_u32..200, 0..60),
        ) {
            let (va, vb): (Vec<u32>, Vec<u32>) = (a.iter().copied().collect(), b.iter().copied().collect());
            prop_assert_eq!(intersect(&va, &vb), a.intersection(&b).copied().collect::<Vec<_>>());
            prop_assert_eq!(subtract(&va, &vb), a.difference(&b).copied().collect::<Vec<_>>());
            prop_assert_eq!(union(&[&va, &vb]), a.union(&b).copied().collect::<Vec<_>>());
        }

        #[test]
        fn select_agrees_with_matching_every_series(
            pattern in "(api|node|web|a|.\\*|.\\+|n.de|)(\\|(api|dev|))?",
            kind_index in 0_usize..4,
            name in "(job|env|missing)",
        ) {
            let kind = [MatchKind::Equal, MatchKind::NotEqual, MatchKind::Regex, MatchKind::NotRegex][kind_index];
            let Ok(matcher) = Matcher::new(kind, &name, &pattern) else { return Ok(()) };
            let (symbols, postings) = index(SERIES);
            let expected: Vec<u32> = SERIES
                .iter()
                .filter(|(_, labels)| {
                    let value = labels.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap_or("");
                    matcher.matches(value)
                })
                .map(|(series_ref, _)| *series_ref)
                .collect();
            prop_assert_eq!(postings.select(&symbols.read(), &[matcher]), expected);
        }
    }
}
