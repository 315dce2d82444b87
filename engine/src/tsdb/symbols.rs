//! Interned label strings: every distinct name and value is stored once and named by a `u32`,
//! so a series' labels cost 8 bytes a pair (Prometheus keeps label strings per series; its
//! index file has the same symbol table idea).
//!
//! Invariants: an id, once handed out, names the same string for the table's life (strings are
//! never removed: the series cap bounds the table). Concurrency: a read lock for lookups, the write
//! lock only to add a new string; callers never hold it while taking another head lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// The strings and their ids.
#[derive(Default)]
pub struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Symbols {
    /// The string named by `id`.
    pub fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    /// The id of `text`, if interned.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// True when no string is interned.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Approximate heap bytes: string bytes plus per-entry overhead.
    pub fn size(&self) -> usize {
        self.strings.iter().map(|text| text.len() + 16 + 40).sum()
    }
}

/// A shared symbol table.
#[derive(Default)]
pub struct SymbolTable {
    inner: RwLock<Symbols>,
}

impl SymbolTable {
    /// Read access for resolving many ids at once.
    pub fn read(&self) -> RwLockReadGuard<'_, Symbols> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The id of `text`, interning it when new.
    pub fn intern(&self, text: &str) -> u32 {
        if let Some(id) = self.read().id(text) {
            return id;
        }
        let mut symbols = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = symbols.id(text) {
            return id;
        }
        let id = u32::try_from(symbols.strings.len()).expect("fewer than 2^32 distinct label strings");
        let shared: Arc<str> = Arc::from(text);
        symbols.strings.push(shared.clone());
        symbols.ids.insert(shared, id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_resolvable() {
        let table = SymbolTable::default();
        let job = table.intern("job");
        let node = table.intern("node");
        assert_ne!(job, node);
        assert_eq!(table.intern("job"), job);
        let symbols = table.read();
        assert_eq!(symbols.get(node), "node");
        assert_eq!(symbols.id("node"), Some(node));
        assert_eq!(symbols.id("missing"), None);
        assert_eq!(symbols.len(), 2);
    }
}
