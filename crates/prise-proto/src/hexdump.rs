//! A readable hex dump, in the layout of `hexdump -C`:
//!
//! ```text
//! 00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a        |Hello, world!.|
//! ```
//!
//! Offsets continue across calls through [`HexDump`], so a stream dumped in
//! chunks reads as one dump.

use std::fmt::Write as _;

/// Bytes shown per line.
pub const BYTES_PER_LINE: usize = 16;

/// Formats `data` as hex dump lines (each ending in `\n`), numbering bytes from `offset`.
pub fn hexdump(data: &[u8], offset: u64) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(BYTES_PER_LINE) * 80);
    for (i, chunk) in data.chunks(BYTES_PER_LINE).enumerate() {
        let at = offset + (i * BYTES_PER_LINE) as u64;
        // Writing to a String cannot fail.
        let _ = write!(out, "{at:08x} ");
        for j in 0..BYTES_PER_LINE {
            if j == 8 {
                out.push(' ');
            }
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// A hex dump of one direction of a stream: remembers the offset between chunks.
#[derive(Debug, Default, Clone)]
pub struct HexDump {
    offset: u64,
}

impl HexDump {
    /// A dump starting at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Formats the next chunk of the stream and advances the offset.
    pub fn chunk(&mut self, data: &[u8]) -> String {
        let s = hexdump(data, self.offset);
        self.offset += data.len() as u64;
        s
    }

    /// Bytes dumped so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hexdump_c_layout() {
        assert_eq!(
            hexdump(b"Hello, world!\n", 0),
            "00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a        |Hello, world!.|\n"
        );
    }

    #[test]
    fn full_and_partial_lines_with_offsets() {
        let data: Vec<u8> = (0u8..20).collect();
        let mut d = HexDump::new();
        let s = d.chunk(&data);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|"
        );
        assert_eq!(
            lines[1],
            "00000010  10 11 12 13                                       |....|"
        );
        assert_eq!(
            d.chunk(b"A"),
            format!("{:08x}  41{}|A|\n", 20, " ".repeat(48))
        );
        assert_eq!(d.offset(), 21);
        assert_eq!(hexdump(b"", 0), "");
    }
}
