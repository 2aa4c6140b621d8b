//! What the working directory's git index says that `git status` and `git diff` will not show,
//! read by till itself before and after a sandboxed run. Asking git would run git in a
//! repository the agent has just written to (the config of a nested repository included).
//!
//! Three marks matter: entries git is told not to look at (`assume-unchanged`, the index's
//! "valid" bit, and `skip-worktree`), whose edits no status or diff shows; and gitlinks (mode
//! 160000), other repositories that a plain `git status` at the top enters and runs git in,
//! with their own config. The format is git's `gitformat-index(5)`, versions 2 to 4, read the
//! way git reads it (a name's length from the entry's flags when it fits in them).

use std::collections::BTreeSet;

/// `assume-unchanged` (`CE_VALID`) in an entry's flags.
const ASSUME_VALID: u16 = 0x8000;
/// The entry has a second word of flags (versions 3 and 4).
const EXTENDED: u16 = 0x4000;
/// The name's length; all ones when it is at least that long.
const NAME_MASK: u16 = 0x0fff;
/// `skip-worktree` in the second word of flags.
const SKIP_WORKTREE: u16 = 0x4000;
/// The type bits of a mode, and a gitlink's.
const MODE_TYPE: u32 = 0o170000;
const MODE_GITLINK: u32 = 0o160000;
/// Each entry's fixed part before the object name: ten 32-bit words.
const STAT_LEN: usize = 40;

/// The marks of one index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Marks {
    /// Paths git is told not to look at: their edits do not show in `git status` or `git diff`.
    pub hidden: BTreeSet<Vec<u8>>,
    /// Paths recorded as other repositories.
    pub gitlinks: BTreeSet<Vec<u8>>,
}

impl Marks {
    /// What `after` marks that `self` did not.
    pub fn added_in(&self, after: &Marks) -> Marks {
        Marks {
            hidden: after.hidden.difference(&self.hidden).cloned().collect(),
            gitlinks: after.gitlinks.difference(&self.gitlinks).cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hidden.is_empty() && self.gitlinks.is_empty()
    }
}

/// The marks of an index's bytes; `None` when they are not an index git reads. Object names are SHA-1's 20 bytes or SHA-256's 32 (the
/// repository's config says which); the one whose entries, extensions and checksum fill the
/// file exactly is the one the file was written with.
pub fn parse(data: &[u8]) -> Option<Marks> {
    parse_with(data, 20).or_else(|| parse_with(data, 32))
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Git's varint for version 4's shared name prefixes (`decode_varint`): seven bits a byte,
/// most significant first, each continuation adding one.
fn varint(data: &[u8], at: &mut usize) -> Option<usize> {
    let mut c = *data.get(*at)?;
    *at += 1;
    let mut val = usize::from(c & 0x7f);
    while c & 0x80 != 0 {
        val = val.checked_add(1)?;
        if val >> (usize::BITS - 7) != 0 {
            return None;
        }
        c = *data.get(*at)?;
        *at += 1;
        val = (val << 7) | usize::from(c & 0x7f);
    }
    Some(val)
}

fn parse_with(data: &[u8], oid_len: usize) -> Option<Marks> {
    if data.get(..4)? != b"DIRC" {
        return None;
    }
    let version = be32(data, 4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = be32(data, 8)?;
    let mut at = 12;
    let mut marks = Marks::default();
    let mut previous: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = at;
        let mode = be32(data, start + 24)?;
        let flags_at = start + STAT_LEN + oid_len;
        let flags = be16(data, flags_at)?;
        let mut name_at = flags_at + 2;
        let mut skip_worktree = false;
        if flags & EXTENDED != 0 {
            if version < 3 {
                return None;
            }
            skip_worktree = be16(data, name_at)? & SKIP_WORKTREE != 0;
            name_at += 2;
        }
        let len = usize::from(flags & NAME_MASK);
        let name = if version == 4 {
            let mut cursor = name_at;
            let strip = varint(data, &mut cursor)?;
            let keep = previous.len().checked_sub(strip)?;
            let rest = data.get(cursor..)?;
            let suffix_len = if len == usize::from(NAME_MASK) {
                rest.iter().position(|&b| b == 0)?
            } else {
                len.checked_sub(keep)?
            };
            previous.truncate(keep);
            previous.extend_from_slice(rest.get(..suffix_len)?);
            // The suffix and its NUL; version 4 pads nothing.
            at = cursor + suffix_len + 1;
            previous.clone()
        } else {
            let rest = data.get(name_at..)?;
            let len = if len == usize::from(NAME_MASK) {
                rest.iter().position(|&b| b == 0)?
            } else {
                len
            };
            let name = rest.get(..len)?.to_vec();
            // One to eight NULs, so the entry's length is a multiple of eight.
            at = start + ((name_at - start + len + 8) & !7);
            name
        };
        if at > data.len() {
            return None;
        }
        if flags & ASSUME_VALID != 0 || skip_worktree {
            marks.hidden.insert(name.clone());
        }
        if mode & MODE_TYPE == MODE_GITLINK {
            marks.gitlinks.insert(name);
        }
    }
    // Extensions (a four-byte signature and a 32-bit length each), then the checksum.
    let end = data.len().checked_sub(oid_len)?;
    while at < end {
        let size = usize::try_from(be32(data, at + 4)?).ok()?;
        at = at.checked_add(8)?.checked_add(size)?;
    }
    (at == end).then_some(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index entry as git writes it.
    #[derive(Clone, Copy)]
    struct Entry<'a> {
        name: &'a [u8],
        mode: u32,
        assume_valid: bool,
        skip_worktree: bool,
    }

    fn entry(name: &[u8]) -> Entry<'_> {
        Entry {
            name,
            mode: 0o100644,
            assume_valid: false,
            skip_worktree: false,
        }
    }

    fn index(version: u32, oid_len: usize, entries: &[Entry<'_>], extension: bool) -> Vec<u8> {
        let mut out = b"DIRC".to_vec();
        out.extend(version.to_be_bytes());
        out.extend(u32::try_from(entries.len()).unwrap().to_be_bytes());
        let mut previous: &[u8] = b"";
        for e in entries {
            let start = out.len();
            let mut stat = [0u8; STAT_LEN];
            stat[24..28].copy_from_slice(&e.mode.to_be_bytes());
            out.extend(stat);
            out.extend(std::iter::repeat_n(0xab, oid_len));
            let extended = e.skip_worktree;
            let mut flags = u16::try_from(e.name.len().min(0xfff)).unwrap();
            if e.assume_valid {
                flags |= ASSUME_VALID;
            }
            if extended {
                flags |= EXTENDED;
            }
            out.extend(flags.to_be_bytes());
            if extended {
                out.extend(SKIP_WORKTREE.to_be_bytes());
            }
            if version == 4 {
                let common = previous
                    .iter()
                    .zip(e.name)
                    .take_while(|(a, b)| a == b)
                    .count();
                out.extend(encode_varint(previous.len() - common));
                out.extend(&e.name[common..]);
                out.push(0);
            } else {
                out.extend(e.name);
                let len = out.len() - start;
                out.extend(std::iter::repeat_n(0, 8 - len % 8));
            }
            previous = e.name;
        }
        if extension {
            out.extend(b"TREE");
            out.extend(3u32.to_be_bytes());
            out.extend(b"abc");
        }
        out.extend(std::iter::repeat_n(0x11, oid_len));
        out
    }

    /// Git's `encode_varint`.
    fn encode_varint(mut value: usize) -> Vec<u8> {
        let mut out = vec![u8::try_from(value & 0x7f).unwrap()];
        value >>= 7;
        while value != 0 {
            value -= 1;
            out.insert(0, 0x80 | u8::try_from(value & 0x7f).unwrap());
            value >>= 7;
        }
        out
    }

    #[test]
    fn varints_read_as_git_writes_them() {
        for value in [0, 1, 127, 128, 129, 4201, 16_511, 16_512, 1 << 40] {
            let bytes = encode_varint(value);
            let mut at = 0;
            assert_eq!(varint(&bytes, &mut at), Some(value), "{bytes:?}");
            assert_eq!(at, bytes.len());
        }
        // One that does not end, and one past a usize.
        assert_eq!(varint(&[0x80, 0x80], &mut 0), None);
        assert_eq!(varint(&[0xff; 12], &mut 0), None);
    }

    fn set(names: &[&str]) -> BTreeSet<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn every_version_and_object_name_reads_the_same_marks() {
        let long = "d/".repeat(2100) + "f";
        let entries = [
            entry(b"a.txt"),
            Entry {
                assume_valid: true,
                ..entry(b"src/hidden.rs")
            },
            Entry {
                skip_worktree: true,
                ..entry(b"src/sparse.rs")
            },
            Entry {
                mode: MODE_GITLINK,
                ..entry(b"vendor/lib")
            },
            Entry {
                assume_valid: true,
                ..entry(long.as_bytes())
            },
            entry(b"z"),
        ];
        for version in [3, 4] {
            for oid_len in [20, 32] {
                for extension in [false, true] {
                    let data = index(version, oid_len, &entries, extension);
                    let marks = parse(&data).unwrap_or_else(|| {
                        panic!("version {version}, {oid_len}-byte names, extension {extension}")
                    });
                    assert_eq!(
                        marks.hidden,
                        set(&["src/hidden.rs", "src/sparse.rs", &long]),
                        "version {version}, {oid_len}"
                    );
                    assert_eq!(marks.gitlinks, set(&["vendor/lib"]));
                }
            }
        }
        // Version 2 has no second word of flags, so no skip-worktree.
        let v2 = [entries[0], entries[1], entry(b"b")];
        let marks = parse(&index(2, 20, &v2, true)).unwrap();
        assert_eq!(marks.hidden, set(&["src/hidden.rs"]));
    }

    #[test]
    fn what_is_not_an_index_git_would_read_is_none() {
        let good = index(2, 20, &[entry(b"a"), entry(b"b")], false);
        assert!(parse(&good).is_some());
        assert!(parse(b"").is_none());
        assert!(parse(b"DIRC").is_none());
        let mut v5 = good.clone();
        v5[7] = 5;
        assert!(parse(&v5).is_none());
        let mut sig = good.clone();
        sig[0] = b'X';
        assert!(parse(&sig).is_none());
        // Every cut short of the whole file fails: nothing is read past its end.
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_none(), "cut at {cut}");
        }
        // A second word of flags in version 2.
        let ext = index(
            3,
            20,
            &[Entry {
                skip_worktree: true,
                ..entry(b"a")
            }],
            false,
        );
        let mut as_v2 = ext.clone();
        as_v2[7] = 2;
        assert!(parse(&as_v2).is_none());
        // Version 4 stripping more than the previous name had.
        let mut v4 = index(4, 20, &[entry(b"ab"), entry(b"ac")], false);
        let second_strip = v4.len() - 20 - 3;
        assert_eq!(v4[second_strip], 1);
        v4[second_strip] = 9;
        assert!(parse(&v4).is_none());
    }

    #[test]
    fn what_a_run_added_is_told_apart_from_what_was_there() {
        let before = parse(&index(
            3,
            20,
            &[
                Entry {
                    skip_worktree: true,
                    ..entry(b"sparse")
                },
                Entry {
                    mode: MODE_GITLINK,
                    ..entry(b"old")
                },
            ],
            false,
        ))
        .unwrap();
        let after = parse(&index(
            3,
            20,
            &[
                Entry {
                    mode: MODE_GITLINK,
                    ..entry(b"new")
                },
                Entry {
                    mode: MODE_GITLINK,
                    ..entry(b"old")
                },
                Entry {
                    assume_valid: true,
                    ..entry(b"secret.rs")
                },
                Entry {
                    skip_worktree: true,
                    ..entry(b"sparse")
                },
            ],
            false,
        ))
        .unwrap();
        let added = before.added_in(&after);
        assert_eq!(added.hidden, set(&["secret.rs"]));
        assert_eq!(added.gitlinks, set(&["new"]));
        assert!(after.added_in(&after).is_empty());
    }
}
