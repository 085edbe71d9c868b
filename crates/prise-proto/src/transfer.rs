//! The file-transfer handshake of `prise send` / `prise recv`.
//!
//! ```text
//! sender                                   receiver
//!   Header {name, size, id} ────────────▶  sanitise name, check size,
//!                                          look for a partial file with this id
//!          ◀──────────────────────────── Resume {offset}
//!   file bytes [offset, size) ─────────▶  append; hash the prefix it had
//!   (hashing the whole file meanwhile)     and the new bytes
//!   Trailer {hash} ─────────────────────▶  compare with its own hash
//!          ◀──────────────────────────── Verdict {ok | mismatch}
//! ```
//!
//! Wire format, version 2 (all integers big-endian):
//!
//! - header: `b"PRSF"`, version `u8` (2), name length `u16`, name (UTF-8),
//!   size `u64`, file id (16 bytes);
//! - resume: `b"PRSR"`, offset `u64`;
//! - file bytes `[offset, size)`, nothing else;
//! - trailer: `b"PRST"`, BLAKE3 hash of the whole file (32 bytes);
//! - verdict: `b"PRSV"`, status `u8` (0 verified, 1 hash mismatch, 2 size mismatch, 3 refused).
//!
//! The hash travels after the data so that the sender hashes while it sends
//! instead of reading the whole file once before the first byte goes out.
//! The file id only picks which partial file a transfer may resume from
//! (the sender derives it from cheap facts: name, size, modification time,
//! the first and last bytes); it proves nothing about the content. A file
//! that changed between two attempts but kept its id resumes from a stale
//! prefix, and the trailer's hash, which covers the whole file, catches it.
//!
//! Version 1 carried the hash in the header and had no trailer; its header
//! is refused with [`TransferError::BadVersion`].
//!
//! Every decoder is sans-IO (`Ok(None)` = need more bytes) and caps what
//! the peer controls: the name length and the announced size; every other
//! message has a fixed length.

use bytes::{Buf, BufMut, BytesMut};

/// Protocol version carried in the header.
pub const VERSION: u8 = 2;
/// Magic of the header.
pub const HEADER_MAGIC: [u8; 4] = *b"PRSF";
/// Magic of the resume message.
pub const RESUME_MAGIC: [u8; 4] = *b"PRSR";
/// Magic of the trailer that follows the file bytes.
pub const TRAILER_MAGIC: [u8; 4] = *b"PRST";
/// Magic of the verdict message.
pub const VERDICT_MAGIC: [u8; 4] = *b"PRSV";
/// Longest file name accepted, in bytes (the usual file-system limit).
pub const MAX_NAME_LEN: usize = 255;
/// Default cap on the announced file size: 64 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 30;
/// Length of a BLAKE3 hash.
pub const HASH_LEN: usize = 32;
/// Length of the file id in the header.
pub const FILE_ID_LEN: usize = 16;

const FIXED_HEADER_LEN: usize = 4 + 1 + 2;

/// What the transfer protocol accepts from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    /// Largest file size a receiver accepts ([`DEFAULT_MAX_FILE_SIZE`]).
    pub max_file_size: u64,
}

impl Default for TransferLimits {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// Errors of the transfer handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The bytes do not start with the expected magic.
    #[error("not a prise transfer (bad magic)")]
    BadMagic,
    /// The header's version is not one this build speaks (version 1 is
    /// what prise sent before the hash moved to the trailer).
    #[error("unsupported transfer version {0} (this build speaks version 2; upgrade the sender)")]
    BadVersion(u8),
    /// The file name is empty, too long, not UTF-8, or nothing is left after sanitising.
    #[error("invalid file name")]
    BadName,
    /// The announced size is above the receiver's cap.
    #[error("file of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// A verdict byte this build does not know.
    #[error("unknown verdict {0}")]
    BadVerdict(u8),
}

/// The first message of a transfer, sent by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// File name (a single path component, sanitised by the receiver).
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Identifies the file for resuming only: a partial file kept under
    /// another id is not resumed from. Not a hash of the content.
    pub id: [u8; FILE_ID_LEN],
}

impl Header {
    /// Appends the encoded header to `dst`.
    ///
    /// # Errors
    /// [`TransferError::BadName`] when the name is empty or longer than [`MAX_NAME_LEN`].
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), TransferError> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(TransferError::BadName);
        }
        dst.reserve(FIXED_HEADER_LEN + self.name.len() + 8 + FILE_ID_LEN);
        dst.put_slice(&HEADER_MAGIC);
        dst.put_u8(VERSION);
        // Fits: checked against MAX_NAME_LEN above.
        dst.put_u16(self.name.len() as u16);
        dst.put_slice(self.name.as_bytes());
        dst.put_u64(self.size);
        dst.put_slice(&self.id);
        Ok(())
    }

    /// Takes a header out of `src` once it is complete; the name is sanitised
    /// with [`sanitize_name`] and the size checked against `limits`.
    ///
    /// # Errors
    /// Bad magic or version, an invalid name, or a size above the cap.
    pub fn decode(
        src: &mut BytesMut,
        limits: &TransferLimits,
    ) -> Result<Option<Header>, TransferError> {
        if src.len() >= 4 && src[..4] != HEADER_MAGIC {
            return Err(TransferError::BadMagic);
        }
        if src.len() > 4 && src[4] != VERSION {
            return Err(TransferError::BadVersion(src[4]));
        }
        if src.len() < FIXED_HEADER_LEN {
            return Ok(None);
        }
        let name_len = u16::from_be_bytes([src[5], src[6]]) as usize;
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(TransferError::BadName);
        }
        let total = FIXED_HEADER_LEN + name_len + 8 + FILE_ID_LEN;
        if src.len() < total {
            return Ok(None);
        }
        let mut msg = src.split_to(total);
        msg.advance(FIXED_HEADER_LEN);
        let raw = msg.split_to(name_len);
        let raw = std::str::from_utf8(&raw).map_err(|_| TransferError::BadName)?;
        let name = sanitize_name(raw)?;
        let size = msg.get_u64();
        if size > limits.max_file_size {
            return Err(TransferError::TooLarge {
                size,
                max: limits.max_file_size,
            });
        }
        let mut id = [0u8; FILE_ID_LEN];
        msg.copy_to_slice(&mut id);
        Ok(Some(Header { name, size, id }))
    }
}

/// Reduces a peer-supplied name to one safe path component.
///
/// Keeps only the last component after any `/` or `\`, replaces control
/// characters and `:` with `_`, strips leading dots (no hidden files, no
/// `.`/`..`) and surrounding spaces. The result never names a directory
/// outside the one it is joined to.
///
/// # Errors
/// [`TransferError::BadName`] when nothing usable is left or the name is too long.
pub fn sanitize_name(raw: &str) -> Result<String, TransferError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    // Dots and spaces are stripped together: trimming them one after the
    // other would turn ". .." into "..".
    let cleaned = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    if cleaned.is_empty() || cleaned.len() > MAX_NAME_LEN {
        return Err(TransferError::BadName);
    }
    Ok(cleaned.to_owned())
}

/// The receiver's answer to a header: where the sender should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Bytes the receiver already has; the sender sends from here.
    pub offset: u64,
}

impl Resume {
    /// Encoded length.
    pub const LEN: usize = 12;

    /// Appends the encoded message to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(&RESUME_MAGIC);
        dst.put_u64(self.offset);
    }

    /// Takes the message out of `src` once complete.
    ///
    /// # Errors
    /// [`TransferError::BadMagic`].
    pub fn decode(src: &mut BytesMut) -> Result<Option<Resume>, TransferError> {
        if src.len() >= 4 && src[..4] != RESUME_MAGIC {
            return Err(TransferError::BadMagic);
        }
        if src.len() < Self::LEN {
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(Resume {
            offset: src.get_u64(),
        }))
    }
}

/// What the sender writes after the file bytes: the hash of the whole file,
/// including any prefix the receiver already had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// BLAKE3 hash of bytes `[0, size)` of the file.
    pub hash: [u8; HASH_LEN],
}

impl Trailer {
    /// Encoded length.
    pub const LEN: usize = 4 + HASH_LEN;

    /// Appends the encoded message to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(Self::LEN);
        dst.put_slice(&TRAILER_MAGIC);
        dst.put_slice(&self.hash);
    }

    /// Takes the message out of `src` once complete; bytes after it stay in `src`.
    ///
    /// # Errors
    /// [`TransferError::BadMagic`], as soon as the first four bytes are in.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Trailer>, TransferError> {
        let seen = src.len().min(4);
        if src[..seen] != TRAILER_MAGIC[..seen] {
            return Err(TransferError::BadMagic);
        }
        if src.len() < Self::LEN {
            return Ok(None);
        }
        src.advance(4);
        let mut hash = [0u8; HASH_LEN];
        src.copy_to_slice(&mut hash);
        Ok(Some(Trailer { hash }))
    }
}

/// The receiver's last word: did the file arrive intact?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Size matches the header and the BLAKE3 hash matches the trailer.
    Verified = 0,
    /// The received bytes hash to something else.
    HashMismatch = 1,
    /// The stream ended before (or went past) the announced size.
    SizeMismatch = 2,
    /// The receiver refused the file (name, size, or local error).
    Refused = 3,
}

impl Verdict {
    /// Encoded length.
    pub const LEN: usize = 5;

    /// Appends the encoded message to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(&VERDICT_MAGIC);
        dst.put_u8(*self as u8);
    }

    /// Takes the message out of `src` once complete.
    ///
    /// # Errors
    /// Bad magic or an unknown status byte.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Verdict>, TransferError> {
        if src.len() >= 4 && src[..4] != VERDICT_MAGIC {
            return Err(TransferError::BadMagic);
        }
        if src.len() < Self::LEN {
            return Ok(None);
        }
        let v = match src[4] {
            0 => Verdict::Verified,
            1 => Verdict::HashMismatch,
            2 => Verdict::SizeMismatch,
            3 => Verdict::Refused,
            other => return Err(TransferError::BadVerdict(other)),
        };
        src.advance(Self::LEN);
        Ok(Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            name: "a.txt".into(),
            size: 258,
            id: [7; 16],
        }
    }

    #[test]
    fn header_wire_format() {
        let mut b = BytesMut::new();
        header().encode(&mut b).unwrap();
        let mut want = b"PRSF\x02\x00\x05a.txt\x00\x00\x00\x00\x00\x00\x01\x02".to_vec();
        want.extend_from_slice(&[7; 16]);
        assert_eq!(&b[..], &want[..]);
        // Byte by byte: incomplete until the last byte.
        let mut partial = BytesMut::new();
        for (i, &byte) in want.iter().enumerate() {
            partial.extend_from_slice(&[byte]);
            let got = Header::decode(&mut partial, &TransferLimits::default()).unwrap();
            assert_eq!(got.is_some(), i == want.len() - 1);
        }
        assert!(partial.is_empty());
    }

    #[test]
    fn header_rejects_bad_input() {
        let limits = TransferLimits { max_file_size: 100 };
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert_eq!(
            Header::decode(&mut b, &limits),
            Err(TransferError::BadMagic)
        );
        let mut b = BytesMut::from(&b"PRSF\x03\x00\x01"[..]);
        assert_eq!(
            Header::decode(&mut b, &limits),
            Err(TransferError::BadVersion(3))
        );
        let mut b = BytesMut::from(&b"PRSF\x02\xff\xff"[..]);
        assert_eq!(Header::decode(&mut b, &limits), Err(TransferError::BadName));
        let mut b = BytesMut::new();
        header().encode(&mut b).unwrap();
        assert_eq!(
            Header::decode(&mut b, &limits),
            Err(TransferError::TooLarge {
                size: 258,
                max: 100
            })
        );
    }

    #[test]
    fn a_version_1_header_is_refused() {
        // "a.txt", 258 bytes, and the 32-byte hash version 1 carried.
        let mut v1 = b"PRSF\x01\x00\x05a.txt\x00\x00\x00\x00\x00\x00\x01\x02".to_vec();
        v1.extend_from_slice(&[7; 32]);
        let mut b = BytesMut::from(&v1[..]);
        let err = Header::decode(&mut b, &TransferLimits::default()).unwrap_err();
        assert_eq!(err, TransferError::BadVersion(1));
        assert!(err.to_string().contains("version 1"), "{err}");
        // Refused from its version byte on: nothing waits for the rest.
        let mut b = BytesMut::from(&v1[..5]);
        assert_eq!(
            Header::decode(&mut b, &TransferLimits::default()),
            Err(TransferError::BadVersion(1))
        );
    }

    #[test]
    fn trailer_wire_format() {
        let mut b = BytesMut::new();
        Trailer { hash: [0xab; 32] }.encode(&mut b);
        let mut want = b"PRST".to_vec();
        want.extend_from_slice(&[0xab; 32]);
        assert_eq!(&b[..], &want[..]);
        // Byte by byte: incomplete until the last byte; what follows stays.
        let mut partial = BytesMut::new();
        for (i, &byte) in want.iter().enumerate() {
            partial.extend_from_slice(&[byte]);
            let got = Trailer::decode(&mut partial).unwrap();
            assert_eq!(got.is_some(), i == want.len() - 1);
        }
        assert!(partial.is_empty());
        let mut b = BytesMut::from(&want[..]);
        b.extend_from_slice(b"PRSV\x00");
        assert_eq!(
            Trailer::decode(&mut b),
            Ok(Some(Trailer { hash: [0xab; 32] }))
        );
        assert_eq!(&b[..], b"PRSV\x00");
    }

    #[test]
    fn trailer_rejects_bad_input() {
        // Wrong from the first byte on: no waiting for four.
        let mut b = BytesMut::from(&b"X"[..]);
        assert_eq!(Trailer::decode(&mut b), Err(TransferError::BadMagic));
        let mut b = BytesMut::from(&b"PRSX"[..]);
        assert_eq!(Trailer::decode(&mut b), Err(TransferError::BadMagic));
        // Extra file bytes where the trailer belongs.
        let mut b = BytesMut::from(&b"\x00\x00\x00\x00PRST"[..]);
        assert_eq!(Trailer::decode(&mut b), Err(TransferError::BadMagic));
        // A verdict or header magic is not a trailer.
        let mut b = BytesMut::from(&b"PRSV\x00"[..]);
        assert_eq!(Trailer::decode(&mut b), Err(TransferError::BadMagic));
        let mut b = BytesMut::new();
        assert_eq!(Trailer::decode(&mut b), Ok(None));
        let mut b = BytesMut::from(&b"PRST\x01\x02"[..]);
        assert_eq!(Trailer::decode(&mut b), Ok(None));
        assert_eq!(b.len(), 6, "nothing consumed before the trailer is whole");
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let mut b = BytesMut::new();
        Header {
            name: "../../etc/passwd".into(),
            ..header()
        }
        .encode(&mut b)
        .unwrap();
        let h = Header::decode(&mut b, &TransferLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.name, "passwd");
        assert_eq!(sanitize_name("..").unwrap_err(), TransferError::BadName);
        assert_eq!(sanitize_name("dir/").unwrap_err(), TransferError::BadName);
        assert_eq!(sanitize_name("C:\\x\\..\\y.bin").unwrap(), "y.bin");
        assert_eq!(sanitize_name(".bashrc").unwrap(), "bashrc");
        assert_eq!(sanitize_name("a\u{0}b\nc").unwrap(), "a_b_c");
        assert_eq!(sanitize_name("c:evil").unwrap(), "c_evil");
        assert!(sanitize_name(&"x".repeat(256)).is_err());
        // Spaces between dots must not leave a relative name behind.
        assert_eq!(sanitize_name(". ..").unwrap_err(), TransferError::BadName);
        assert_eq!(sanitize_name(" . . .x").unwrap(), "x");
        assert_eq!(sanitize_name(".\u{0}..").unwrap(), "_..");
    }

    #[test]
    fn resume_and_verdict_round_trip() {
        let mut b = BytesMut::new();
        Resume { offset: 0x0102 }.encode(&mut b);
        assert_eq!(&b[..], b"PRSR\x00\x00\x00\x00\x00\x00\x01\x02");
        assert_eq!(
            Resume::decode(&mut b).unwrap(),
            Some(Resume { offset: 258 })
        );
        Verdict::HashMismatch.encode(&mut b);
        assert_eq!(&b[..], b"PRSV\x01");
        assert_eq!(
            Verdict::decode(&mut b).unwrap(),
            Some(Verdict::HashMismatch)
        );
        let mut b = BytesMut::from(&b"PRSV\x09"[..]);
        assert_eq!(Verdict::decode(&mut b), Err(TransferError::BadVerdict(9)));
        let mut b = BytesMut::from(&b"PRS"[..]);
        assert_eq!(Verdict::decode(&mut b), Ok(None));
    }
}
