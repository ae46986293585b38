//! OpenSSH key revocation lists (KRL), the binary format `sshd`'s
//! `RevokedKeys` and `ssh-keygen -Q` read.
//!
//! The format is specified in `PROTOCOL.krl` in the OpenSSH sources. We
//! write only what a certificate authority needs: the header and one
//! certificate section for our CA holding a serial list. No signature
//! section (OpenSSH >= 9.4 refuses KRLs that carry one); the KRL is served
//! over Warrant's authenticated API instead.
//!
//! Encoding, as in RFC 4251 §5: `uint32`/`uint64` big-endian, `string` =
//! `uint32` length then the bytes.

/// `"SSHKRL\n\0"`.
const KRL_MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const KRL_FORMAT_VERSION: u32 = 1;
const KRL_SECTION_CERTIFICATES: u8 = 1;
const KRL_SECTION_CERT_SERIAL_LIST: u8 = 0x20;

/// What goes into one KRL.
pub(super) struct Krl<'a> {
    /// Increases each time the revoked set changes.
    pub version: u64,
    /// Seconds since the epoch.
    pub generated_at: u64,
    pub comment: &'a str,
    /// The CA's public key in SSH wire form (`string "ssh-ed25519"`,
    /// `string key`), as certificates name their signer.
    pub ca_key_blob: &'a [u8],
    /// Revoked certificate serials. Serial 0 is never valid in a KRL
    /// (`ssh-keygen` refuses it); callers never pass it.
    pub serials: &'a [u64],
}

impl Krl<'_> {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.ca_key_blob.len() + 8 * self.serials.len());
        out.extend_from_slice(KRL_MAGIC);
        put_u32(&mut out, KRL_FORMAT_VERSION);
        put_u64(&mut out, self.version);
        put_u64(&mut out, self.generated_at);
        put_u64(&mut out, 0); // flags: none defined
        put_string(&mut out, b""); // reserved
        put_string(&mut out, self.comment.as_bytes());
        if self.serials.is_empty() {
            // A section must hold at least one subsection; an empty KRL is
            // just the header (what `ssh-keygen -k` writes with no keys).
            return out;
        }
        let mut serials = self.serials.to_vec();
        serials.sort_unstable();
        serials.dedup();
        let mut list = Vec::with_capacity(8 * serials.len());
        for s in &serials {
            put_u64(&mut list, *s);
        }
        let mut section = Vec::with_capacity(16 + self.ca_key_blob.len() + list.len());
        put_string(&mut section, self.ca_key_blob);
        put_string(&mut section, b""); // reserved
        section.push(KRL_SECTION_CERT_SERIAL_LIST);
        put_string(&mut section, &list);
        out.push(KRL_SECTION_CERTIFICATES);
        put_string(&mut out, &section);
        out
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // INVARIANT: every string we write is far below 4 GiB (a serial list of
    // 500 million entries would be needed to reach it).
    put_u32(out, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal reader for the test: takes the fields back in order.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        }
        fn u8(&mut self) -> u8 {
            self.take(1)[0]
        }
        fn u32(&mut self) -> u32 {
            u32::from_be_bytes(self.take(4).try_into().unwrap())
        }
        fn u64(&mut self) -> u64 {
            u64::from_be_bytes(self.take(8).try_into().unwrap())
        }
        fn string(&mut self) -> &'a [u8] {
            let n = self.u32() as usize;
            self.take(n)
        }
    }

    fn krl(serials: &[u64]) -> Vec<u8> {
        Krl {
            version: 7,
            generated_at: 1_700_000_000,
            comment: "warrant ssh engine `ops`",
            ca_key_blob: b"\0\0\0\x0bssh-ed25519\0\0\0\x20abcdefghijklmnopqrstuvwxyz012345",
            serials,
        }
        .encode()
    }

    fn header(r: &mut Reader<'_>) {
        assert_eq!(r.take(8), b"SSHKRL\n\0");
        assert_eq!(r.u32(), 1);
        assert_eq!(r.u64(), 7);
        assert_eq!(r.u64(), 1_700_000_000);
        assert_eq!(r.u64(), 0);
        assert_eq!(r.string(), b"");
        assert_eq!(r.string(), b"warrant ssh engine `ops`");
    }

    #[test]
    fn an_empty_krl_is_only_the_header() {
        let bytes = krl(&[]);
        let mut r = Reader(&bytes);
        header(&mut r);
        assert!(r.0.is_empty());
    }

    #[test]
    fn serials_go_sorted_and_deduplicated_into_one_certificate_section() {
        let bytes = krl(&[9, 3, u64::MAX, 3]);
        let mut r = Reader(&bytes);
        header(&mut r);
        assert_eq!(r.u8(), KRL_SECTION_CERTIFICATES);
        let mut s = Reader(r.string());
        assert!(r.0.is_empty(), "one section only");
        assert_eq!(s.string().len(), 4 + 11 + 4 + 32, "the CA key blob");
        assert_eq!(s.string(), b"", "reserved");
        assert_eq!(s.u8(), KRL_SECTION_CERT_SERIAL_LIST);
        let mut list = Reader(s.string());
        assert!(s.0.is_empty());
        let got: Vec<u64> =
            std::iter::from_fn(|| (!list.0.is_empty()).then(|| list.u64())).collect();
        assert_eq!(got, vec![3, 9, u64::MAX]);
    }
}
