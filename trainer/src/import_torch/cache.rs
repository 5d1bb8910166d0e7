//! The download cache's record of one remote file (`state.json`): which file it is (URL, length,
//! validators) and which byte ranges of the local copy hold the server's bytes.

use std::path::PathBuf;

/// The default cache folder: `$XDG_CACHE_HOME/dit-web/downloads`, else `~/.cache/dit-web/downloads`.
pub fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("dit-web/downloads")
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct CacheState {
    pub url: String,
    pub len: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Sorted, disjoint, non-touching byte ranges `[start, end)` of `data` that are whole.
    pub have: Vec<(u64, u64)>,
}

impl CacheState {
    /// The parts of `[start, end)` not yet held.
    pub fn missing(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        for &(a, b) in &self.have {
            if b <= at {
                continue;
            }
            if a >= end {
                break;
            }
            if a > at {
                out.push((at, a));
            }
            at = at.max(b);
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    pub fn insert(&mut self, start: u64, end: u64) {
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.have.len());
        for &(a, b) in &self.have {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.have = merged;
    }

    pub fn held(&self) -> u64 {
        self.have.iter().map(|(a, b)| b - a).sum()
    }

    /// Whether a cache written for `self` still describes the file the server has now.
    pub fn same_file(&self, now: &CacheState) -> bool {
        let agree = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.url == now.url
            && self.len == now.len
            && agree(&self.etag, &now.etag)
            && agree(&self.last_modified, &now.last_modified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_gaps_are_found() {
        let mut s = CacheState::default();
        s.insert(10, 20);
        s.insert(30, 40);
        assert_eq!(s.missing(0, 50), [(0, 10), (20, 30), (40, 50)]);
        assert_eq!(s.missing(12, 18), []);
        assert_eq!(s.missing(15, 35), [(20, 30)]);
        s.insert(20, 30);
        assert_eq!(s.have, [(10, 40)]);
        assert_eq!(s.held(), 30);
    }
}
