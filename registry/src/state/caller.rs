//! Who makes a request of the registry's state.

/// Who makes a request: the identity of its verified certificate, and the entity whose CA that
/// certificate chains to (`None` for the mesh's own CA). Both decide ownership, so an entity's
/// CA cannot mint a certificate that acts on the mesh's agents by naming the same identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub identity: String,
    pub entity: Option<String>,
}

impl Caller {
    pub fn mesh(identity: &str) -> Caller {
        Caller { identity: identity.to_owned(), entity: None }
    }

    pub(super) fn describe(&self) -> String {
        match &self.entity {
            Some(entity) => format!("{} (entity {entity})", self.identity),
            None => self.identity.clone(),
        }
    }
}
