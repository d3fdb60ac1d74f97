//! The registries an agent knows: `TOOLMESH_REGISTRY_URL` takes one URL or several,
//! comma-separated (replicas of one registry sharing its store). Each agent homes on one of
//! them, chosen from its id so that agents spread evenly, and moves on to the next when the one
//! it uses stops answering; its registration and cached topology go with it. A DNS name with
//! several addresses works as one entry: every connection tries its addresses in turn.

use crate::error::{Error, ErrorKind, Result};
use crate::registry_client::check_registry_url;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Checks every URL of a comma-separated list (at least one, each https) and answers them
/// without trailing slashes or duplicates, in the order given.
pub fn parse(list: &str) -> Result<Vec<String>> {
    let mut urls: Vec<String> = Vec::new();
    for entry in list.split(',') {
        if entry.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the registry URL list '{list}' has an empty entry; separate the URLs by single commas, like \
                     https://10.0.0.1:8443,https://10.0.0.2:8443"
                ),
            ));
        }
        let url = check_registry_url(entry)?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// The registry URLs and the one in use; shared by the clones of one client.
#[derive(Debug)]
pub struct Registries {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Registries {
    /// `urls` as [`parse`] answers them (at least one).
    pub fn new(urls: Vec<String>) -> Registries {
        assert!(!urls.is_empty(), "registry_endpoints::parse answers at least one URL");
        Registries { urls, current: AtomicUsize::new(0) }
    }

    /// The registry in use: its index (for [`Registries::fail_over`]) and URL.
    pub fn current(&self) -> (usize, &str) {
        let index = self.current.load(Ordering::Relaxed) % self.urls.len();
        (index, &self.urls[index])
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Uses the registry that `key` (an agent id) spreads to.
    pub fn home(&self, key: &str) {
        self.current.store(spread(key, self.urls.len()), Ordering::Relaxed);
    }

    /// The registry at `failed` did not answer: uses the next one, unless another request
    /// moved on already. Answers the URL now in use when there is another to try.
    pub fn fail_over(&self, failed: usize) -> Option<&str> {
        if self.urls.len() < 2 {
            return None;
        }
        let next = (failed + 1) % self.urls.len();
        let _ = self.current.compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
        Some(self.current().1)
    }
}

/// Which of `n` registries `key` homes on: FNV-1a of the key, so that every process (and
/// every language) spreads the same ids the same way.
pub fn spread(key: &str, n: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    (hash % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_checked_entry_by_entry() {
        assert_eq!(parse("https://a:1/, https://b:2,https://a:1").unwrap(), ["https://a:1", "https://b:2"]);
        let empty = parse("https://a:1,,https://b:2").unwrap_err();
        assert!(empty.message().contains("empty entry"), "{empty}");
        assert_eq!(parse("https://a:1,http://b:2").unwrap_err().kind(), ErrorKind::RegistryUrlNotHttps);
    }

    #[test]
    fn agents_spread_evenly_and_fail_over_in_turn() {
        let mut homes = [0usize; 3];
        for i in 0..3000 {
            homes[spread(&format!("calc-{i:08x}"), 3)] += 1;
        }
        assert!(homes.iter().all(|&n| (800..=1200).contains(&n)), "uneven: {homes:?}");

        let registries = Registries::new(parse("https://a:1,https://b:2,https://c:3").unwrap());
        registries.home("some-agent");
        let (home, _) = registries.current();
        assert_eq!(home, spread("some-agent", 3));
        let next = registries.fail_over(home).map(str::to_owned);
        assert_eq!(next.as_deref(), Some(registries.urls[(home + 1) % 3].as_str()));
        // A second failure report about the same registry does not skip one.
        assert_eq!(registries.fail_over(home).map(str::to_owned), next);
        assert_eq!(Registries::new(parse("https://a:1").unwrap()).fail_over(0), None, "one registry: nowhere to go");
    }
}
