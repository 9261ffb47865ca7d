//! Choosing one X.509-SVID when the Workload API offers several.

use std::fmt;

use spiffe::SpiffeId;

/// Which X.509-SVID a workload serves when the Workload API offers several
/// (several registration entries match the workload).
///
/// The JWT-SVIDs a [`WorkloadApiSource`](super::WorkloadApiSource) fetches are for the same SPIFFE ID
/// as the X.509-SVID it picked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SvidPicker {
    /// The SVID whose SPIFFE ID sorts first (byte order), ties broken by
    /// hint (no hint first). The order in which the agent lists SVIDs does
    /// not matter; SPIRE lists them by entry ID, a random UUID, so "the
    /// first one" would change when entries are re-created. Adding an entry
    /// whose ID sorts earlier does change the choice: workloads with several
    /// entries should pick by hint or ID.
    #[default]
    Default,
    /// The SVID with this hint (the registration entry's `hint`).
    Hint(String),
    /// The SVID with this SPIFFE ID (the first by hint if several have it).
    Id(SpiffeId),
}

impl fmt::Display for SvidPicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default choice"),
            Self::Hint(hint) => write!(f, "hint `{hint}`"),
            Self::Id(id) => write!(f, "SPIFFE ID `{id}`"),
        }
    }
}

impl SvidPicker {
    /// Picks one of `svids` (ID, hint) by index.
    pub(super) fn pick<'a>(
        &self,
        svids: impl Iterator<Item = (&'a SpiffeId, &'a str)>,
    ) -> Option<usize> {
        let key = |(id, hint): (&SpiffeId, &str)| (id.to_string(), hint.to_owned());
        let mut candidates: Vec<(usize, (String, String))> = svids
            .enumerate()
            .filter(|(_, (id, hint))| match self {
                Self::Default => true,
                Self::Hint(wanted) => hint == wanted,
                Self::Id(wanted) => *id == wanted,
            })
            .map(|(i, svid)| (i, key(svid)))
            .collect();
        candidates.sort_by(|a, b| a.1.cmp(&b.1));
        candidates.first().map(|(i, _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn default_pick_is_the_smallest_id_then_hint_whatever_the_order() {
        let a = id("spiffe://example.org/a");
        let b = id("spiffe://example.org/b");
        let offers = [(&b, ""), (&a, "z"), (&a, "internal")];
        assert_eq!(SvidPicker::Default.pick(offers.iter().copied()), Some(2));
        let reversed = [(&a, "internal"), (&a, "z"), (&b, "")];
        assert_eq!(SvidPicker::Default.pick(reversed.iter().copied()), Some(0));
    }

    #[test]
    fn hint_and_id_pickers_choose_their_svid_or_none() {
        let a = id("spiffe://example.org/a");
        let b = id("spiffe://example.org/b");
        let offers = [(&a, "internal"), (&b, "external")];
        let pick = |p: SvidPicker| p.pick(offers.iter().copied());
        assert_eq!(pick(SvidPicker::Hint("external".into())), Some(1));
        assert_eq!(pick(SvidPicker::Id(a.clone())), Some(0));
        assert_eq!(pick(SvidPicker::Hint("other".into())), None);
        assert_eq!(pick(SvidPicker::Id(id("spiffe://example.org/c"))), None);
    }
}
