//! Strings stored once and named by a small integer.

use std::collections::HashMap;

/// Interns strings: each distinct string is stored once and named by a
/// `u32`; looking up a string already seen does not allocate.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    by_text: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    texts: Vec<Box<str>>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `text`, added if new.
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(&i) = self.by_text.get(text) {
            return i;
        }
        // Past u32::MAX strings every further one shares the last index;
        // no audit log has that many distinct targets or routes.
        let i = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
        self.texts.push(text.into());
        self.by_text.insert(text.into(), i);
        i
    }

    /// The index of `text`, if it was interned.
    pub fn find(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    /// The string of an index; empty for an index never handed out.
    pub fn get(&self, index: u32) -> &str {
        self.texts.get(index as usize).map_or("", |t| t)
    }

    /// How many distinct strings are interned.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// `true` if nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}
