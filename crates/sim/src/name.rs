//! Names the twin shares with its traces.

use serde::{Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The name of a host, bridge, port, namespace, device, endpoint or physical
/// network, shared between the twin and every trace hop that mentions it.
///
/// Why not `String`: an explained trace records tens of hops, each naming
/// where it happened and what it touched. With shared names a hop costs a
/// reference count per name instead of an allocation and a copy, which is
/// most of what made recording a trace slow. It reads as a `&str`
/// (`Deref`), compares with strings and serialises as one, so renderers and
/// tests treat it as text.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Arc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name(Arc::from(s.as_str()))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

#[cfg(test)]
mod tests {
    use super::Name;

    #[test]
    fn reads_compares_and_serialises_as_text() {
        let n = Name::from("br-int");
        assert_eq!(n, "br-int");
        assert_eq!("br-int", n);
        assert_eq!(n, "br-int".to_string());
        assert_ne!(n, "br-ex");
        assert_eq!(n.len(), 6, "derefs to str");
        assert_eq!(format!("{n} {n:?}"), "br-int \"br-int\"");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"br-int\"");
        let m = n.clone();
        assert!(std::ptr::eq(n.as_str(), m.as_str()), "a clone shares the text");
    }
}
