//! Neutron's device-naming rules, in one place, because every layer (plan,
//! realize, trace) must agree on them byte for byte.

/// `LINUX_DEV_LEN`: Neutron cuts prefix + UUID device names to 14 characters.
pub const LINUX_DEV_LEN: usize = 14;
/// `DEVICE_NAME_MAX_LEN`: patch-port names longer than this are hashed.
pub const DEVICE_NAME_MAX_LEN: usize = 15;
/// Hex digits of the SHA-1 suffix of a shortened name (`INTERFACE_HASH_LEN`).
pub const INTERFACE_HASH_LEN: usize = 6;

/// `prefix + name`, or when longer than 15 characters, `prefix + part of name
/// + first 6 hex digits of sha1(name)` as `neutron_lib.plugins.utils.get_interface_name`
///   does for `int-<bridge>` / `phy-<bridge>` patch ports.
pub fn interface_name(prefix: &str, name: &str, sha1_hex: impl FnOnce(&str) -> String) -> String {
    let full = format!("{prefix}{name}");
    if full.len() <= DEVICE_NAME_MAX_LEN {
        return full;
    }
    let keep = DEVICE_NAME_MAX_LEN - prefix.len() - INTERFACE_HASH_LEN;
    let hash = sha1_hex(name);
    format!("{prefix}{}{}", &name[..keep.min(name.len())], &hash[..INTERFACE_HASH_LEN])
}

/// `qrouter-<router id>`.
pub fn qrouter_ns(router: &crate::RouterId) -> String {
    format!("qrouter-{router}")
}
/// `snat-<router id>`.
pub fn snat_ns(router: &crate::RouterId) -> String {
    format!("snat-{router}")
}
/// `fip-<external network id>`.
pub fn fip_ns(network: &crate::NetworkId) -> String {
    format!("fip-{network}")
}
/// `qdhcp-<network id>`.
pub fn qdhcp_ns(network: &crate::NetworkId) -> String {
    format!("qdhcp-{network}")
}
/// `rfp-` + first 10 characters of the router id (qrouter end of the veth).
pub fn rfp_dev(router: &crate::RouterId) -> String {
    format!("rfp-{}", &router.hyphenated()[..10])
}
/// `fpr-` + first 10 characters of the router id (fip end of the veth).
pub fn fpr_dev(router: &crate::RouterId) -> String {
    format!("fpr-{}", &router.hyphenated()[..10])
}
