//! Fast text forms of addresses for the hot paths that print many of them
//! (explained traces print several addresses per hop).

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 address written as `Ipv4Addr`'s `Display` writes it, in one
/// `write_str` of a stack buffer: the standard one formats four numbers
/// through the formatting machinery, which was a tenth of a text trace.
/// Ignores width and precision (use `Ipv4Addr` itself for padded columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Text(pub Ipv4Addr);

impl Ipv4Text {
    /// Write the address into `buf`; the text is `buf[..n]` for the returned `n`.
    pub fn encode(self, buf: &mut [u8; 15]) -> usize {
        let mut n = 0;
        for (i, o) in self.0.octets().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            if o >= 100 {
                buf[n] = b'0' + o / 100;
                n += 1;
            }
            if o >= 10 {
                buf[n] = b'0' + o / 10 % 10;
                n += 1;
            }
            buf[n] = b'0' + o % 10;
            n += 1;
        }
        n
    }
}

impl fmt::Display for Ipv4Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 15];
        let n = self.encode(&mut buf);
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::Ipv4Text;
    use std::net::Ipv4Addr;

    #[test]
    fn writes_what_ipv4addr_writes() {
        for ip in [[0, 0, 0, 0], [255, 255, 255, 255], [10, 0, 0, 1], [192, 168, 1, 10], [100, 9, 99, 109], [1, 20, 200, 250]] {
            let ip = Ipv4Addr::from(ip);
            assert_eq!(Ipv4Text(ip).to_string(), ip.to_string());
        }
        for x in (0..=u32::MAX).step_by(9_999_991) {
            let ip = Ipv4Addr::from(x);
            assert_eq!(Ipv4Text(ip).to_string(), ip.to_string());
        }
    }
}
