//! The line-protocol command parser: never panics on any UTF-8 line, and a
//! parsed command's names are substrings of the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::line::Command;

fuzz_target!(|line: &str| {
    if let Ok(cmd) = Command::parse(line) {
        match cmd {
            Command::Join { room, .. }
            | Command::Leave(room)
            | Command::Who { room, .. }
            | Command::History { room, .. }
            | Command::Typing { room, .. }
            | Command::Emit { room, .. } => assert!(line.contains(room.as_str())),
            Command::Say { room, text } => {
                assert!(line.contains(room.as_str()));
                assert!(line.contains(text.as_str()));
            }
            _ => {}
        }
    }
});
