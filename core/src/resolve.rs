//! Dependency resolution: which provided tools satisfy a [`DependencySpec`], best first.
//! The registry resolves with this code and agents select with it, so both agree.

use crate::error::{Error, ErrorKind, Result};
use crate::registry_api::{DependencySpec, Provider, TagSelector};

/// A parsed dependency: tags split by role, the version constraint compiled.
#[derive(Debug, Clone)]
pub struct Selector {
    capability: String,
    required: Vec<String>,
    preferred: Vec<String>,
    excluded: Vec<String>,
    any_of: Vec<Vec<String>>,
    version: Option<semver::VersionReq>,
}

impl Selector {
    pub fn new(spec: &DependencySpec) -> Result<Self> {
        if spec.capability.trim().is_empty() {
            return Err(Error::new(ErrorKind::InvalidConfig, "a dependency needs a non-empty capability"));
        }
        let mut selector = Selector {
            capability: spec.capability.clone(),
            required: Vec::new(),
            preferred: Vec::new(),
            excluded: Vec::new(),
            any_of: Vec::new(),
            version: None,
        };
        for term in &spec.tags {
            match term {
                TagSelector::One(tag) => {
                    if let Some(t) = tag.strip_prefix('+') {
                        selector.preferred.push(t.to_owned());
                    } else if let Some(t) = tag.strip_prefix('-') {
                        selector.excluded.push(t.to_owned());
                    } else {
                        selector.required.push(tag.clone());
                    }
                }
                TagSelector::AnyOf(group) => selector.any_of.push(group.clone()),
            }
        }
        if let Some(req) = spec.version.as_deref().map(str::trim).filter(|r| !r.is_empty() && *r != "*") {
            let parsed = semver::VersionReq::parse(req).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "dependency '{}': version constraint '{req}' is not valid semver ({e}); \
                         write it like '>=1.2', '^2' or '>=1,<3'",
                        spec.capability
                    ),
                )
            })?;
            selector.version = Some(parsed);
        }
        Ok(selector)
    }

    /// `Some(score)` when a tool with this capability, version and tags satisfies the selector;
    /// the score counts the preferred tags it carries.
    pub fn score(&self, capability: &str, version: &str, tags: &[String]) -> Option<u32> {
        if capability != self.capability {
            return None;
        }
        if let Some(req) = &self.version {
            let v = semver::Version::parse(version.trim()).ok()?;
            if !req.matches(&v) {
                return None;
            }
        }
        let has = |t: &String| tags.iter().any(|x| x == t);
        if !self.required.iter().all(has) || self.excluded.iter().any(has) {
            return None;
        }
        if !self.any_of.iter().all(|group| group.iter().any(has)) {
            return None;
        }
        Some(self.preferred.iter().filter(|t| has(t)).count() as u32)
    }

    /// Scores and orders providers: best score first, then by agent id for a stable order.
    pub fn rank(&self, candidates: impl IntoIterator<Item = Provider>) -> Vec<Provider> {
        let mut out: Vec<Provider> = candidates
            .into_iter()
            .filter_map(|mut p| {
                p.score = self.score(&p.capability, &p.version, &p.tags)?;
                Some(p)
            })
            .collect();
        out.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.agent_id.cmp(&b.agent_id)).then_with(|| a.tool.cmp(&b.tool)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Selector {
        Selector::new(&serde_json::from_str(json).unwrap()).unwrap()
    }
    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capability_must_match() {
        assert_eq!(spec(r#""add""#).score("add", "1.0.0", &[]), Some(0));
        assert_eq!(spec(r#""add""#).score("sub", "1.0.0", &[]), None);
    }

    #[test]
    fn tags_required_preferred_excluded_and_or_groups() {
        let s = spec(r#"{"capability":"llm","tags":["chat","+fast","-beta",["gpu","tpu"]]}"#);
        assert_eq!(s.score("llm", "1.0.0", &tags(&["chat", "gpu"])), Some(0));
        assert_eq!(s.score("llm", "1.0.0", &tags(&["chat", "tpu", "fast"])), Some(1));
        assert_eq!(s.score("llm", "1.0.0", &tags(&["gpu"])), None, "required tag missing");
        assert_eq!(s.score("llm", "1.0.0", &tags(&["chat", "gpu", "beta"])), None, "excluded tag present");
        assert_eq!(s.score("llm", "1.0.0", &tags(&["chat"])), None, "OR group unmet");
    }

    #[test]
    fn semver_constraints() {
        let cases = [
            (">=1.2", "1.2.0", true),
            (">=1.2", "1.1.9", false),
            ("^2", "2.5.1", true),
            ("^2", "3.0.0", false),
            (">=1,<3", "2.9.9", true),
            (">=1,<3", "3.0.0", false),
            ("*", "0.0.1", true),
        ];
        for (req, v, ok) in cases {
            let s = Selector::new(&DependencySpec { capability: "c".into(), tags: vec![], version: Some(req.into()) }).unwrap();
            assert_eq!(s.score("c", v, &[]).is_some(), ok, "{req} vs {v}");
        }
        let s = Selector::new(&DependencySpec { capability: "c".into(), tags: vec![], version: Some(">=1".into()) }).unwrap();
        assert_eq!(s.score("c", "not-a-version", &[]), None);
        let err = Selector::new(&DependencySpec { capability: "c".into(), tags: vec![], version: Some(">>1".into()) }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("'>>1'"), "{}", err.message());
    }

    #[test]
    fn rank_puts_preferred_first_and_drops_mismatches() {
        let p = |id: &str, t: &[&str]| Provider {
            agent_id: id.into(),
            agent_name: id.into(),
            endpoint: format!("https://{id}"),
            tool: "t".into(),
            capability: "c".into(),
            version: "1.0.0".into(),
            tags: tags(t),
            score: 0,
            annotations: Default::default(),
            param_headers: vec![],
        };
        let s = spec(r#"{"capability":"c","tags":["+fast","-old"]}"#);
        let ranked = s.rank(vec![p("a", &[]), p("b", &["fast"]), p("c", &["old"]), p("d", &["fast"])]);
        let ids: Vec<_> = ranked.iter().map(|p| p.agent_id.as_str()).collect();
        assert_eq!(ids, ["b", "d", "a"]);
        assert_eq!(ranked[0].score, 1);
    }
}
