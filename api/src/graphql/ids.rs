//! Opaque global IDs: `node(id:)` takes any of them. The encoding (base64url of `Kind:key`) is
//! not a secret and not a capability: a decoded ID is always looked up inside the viewer's
//! tenant, so another tenant's ID finds nothing.

use async_graphql::ID;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The kinds of object a global ID can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Connection,
    /// Keyed `connection/evt_…`.
    Event,
    /// Keyed `connection/rb_…`.
    ReplayBatch,
}

impl NodeKind {
    fn as_str(self) -> &'static str {
        match self {
            NodeKind::Connection => "Connection",
            NodeKind::Event => "Event",
            NodeKind::ReplayBatch => "ReplayBatch",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [NodeKind::Connection, NodeKind::Event, NodeKind::ReplayBatch]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalId {
    pub kind: NodeKind,
    /// The object's key within the tenant (a connection's ID, …).
    pub key: String,
}

impl GlobalId {
    pub fn new(kind: NodeKind, key: &str) -> Self {
        GlobalId {
            kind,
            key: key.to_string(),
        }
    }

    pub fn encode(&self) -> ID {
        ID(URL_SAFE_NO_PAD.encode(format!("{}:{}", self.kind.as_str(), self.key)))
    }

    /// `None` for anything this API did not make.
    pub fn decode(id: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(id.as_bytes()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (kind, key) = text.split_once(':')?;
        Some(GlobalId {
            kind: NodeKind::parse(kind)?,
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_and_a_foreign_string_is_not_an_id() {
        let id = GlobalId::new(NodeKind::Connection, "eu-1").encode();
        assert_eq!(
            GlobalId::decode(&id),
            Some(GlobalId::new(NodeKind::Connection, "eu-1"))
        );
        assert_eq!(GlobalId::decode("not an id"), None);
        assert_eq!(GlobalId::decode(&URL_SAFE_NO_PAD.encode("Tenant:x")), None);
    }
}
