//! What the working directory's git index says that `git status` and `git diff` will not show,
//! read by till itself before and after a sandboxed run. Asking git would run git in a
//! repository the agent has just written to (the config of a nested repository included).
//!
//! Three marks matter: entries git is told not to look at (`assume-unchanged`, the index's
//! "valid" bit, and `skip-worktree`), whose edits no status or diff shows; and gitlinks (mode
//! 160000), other repositories that a plain `git status` at the top enters and runs git in,
//! with their own config. The format is git's `gitformat-index(5)`, versions 2 to 4, read the
//! way git reads it (a name's length from the entry's flags when it fits in them).
//!
//! A split index (`git update-index --split-index`, `core.splitIndex`) holds only what changed
//! since its shared index `.git/sharedindex.HEX` was written, which holds the rest, marks and
//! all: reading `.git/index` alone can miss every mark. Its `link` extension names the shared
//! index and says, in two bitmaps, which of its entries are deleted and which replaced; the
//! two are merged as git merges them.

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

/// An index as till reads it: the marks of its entries, and, for a split index, the shared
/// index it names and how it changes the shared index's entries.
#[derive(Debug)]
pub struct Index {
    oid_len: usize,
    /// The marks of its entries that have a name.
    marks: Marks,
    /// Whether each entry without a name is hidden and a gitlink, in order. In a split index
    /// they come first, and replace, one each, the shared index's entries at the positions of
    /// the link's replace bitmap (git takes their name from there, all else from here).
    unnamed: Vec<(bool, bool)>,
    /// An entry without a name came after one with a name, which git refuses in a split index.
    unnamed_late: bool,
    /// The `link` extension: the index is split from a shared one.
    link: Option<Link>,
}

/// A split index's `link` extension (git's `split-index.c`): the shared index's object name,
/// and which of its entries are deleted and which replaced.
#[derive(Debug)]
struct Link {
    shared: Vec<u8>,
    delete: Ewah,
    replace: Ewah,
}

/// The index at `data`; `None` when it is not an index git reads. Object names are SHA-1's
/// 20 bytes or SHA-256's 32 (the repository's config says which); the one whose entries,
/// extensions and checksum fill the file exactly is the one the file was written with.
pub fn parse(data: &[u8]) -> Option<Index> {
    parse_with(data, 20).or_else(|| parse_with(data, 32))
}

impl Index {
    /// The file of `.git` that holds the shared index this one is split from
    /// (`sharedindex.HEX`), when there is one: its entries are the index's too.
    pub fn shared_index(&self) -> Option<String> {
        let link = self.link.as_ref()?;
        if link.shared.iter().all(|&b| b == 0) {
            return None;
        }
        let hex: String = link.shared.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("sharedindex.{hex}"))
    }

    /// The marks of an index that is not split.
    pub fn marks(mut self) -> Marks {
        for (hidden, gitlink) in self.unnamed.drain(..) {
            if hidden {
                self.marks.hidden.insert(Vec::new());
            }
            if gitlink {
                self.marks.gitlinks.insert(Vec::new());
            }
        }
        self.marks
    }

    /// The marks of this split index over `shared`, the shared index it names, merged as git
    /// merges them (`merge_base_index`): the shared index's entries less those deleted, those
    /// replaced taking their marks from this index's entries without a name, and this
    /// index's named entries. `None` when git would refuse the pair.
    pub fn merged(mut self, shared: &[u8]) -> Option<Marks> {
        let link = self.link.take()?;
        if self.unnamed_late {
            return None;
        }
        let count = usize::try_from(be32(shared, 8)?).ok()?;
        // Every entry takes at least its stat data, object name and flags: a count the file
        // cannot hold is refused before anything is sized by it.
        if count > shared.len() / (STAT_LEN + self.oid_len + 2) {
            return None;
        }
        const KEEP: u32 = u32::MAX;
        const DELETED: u32 = u32::MAX - 1;
        let mut fate = vec![KEEP; count];
        let mut replaced = 0usize;
        link.replace.each_bit(count, |pos| {
            // git takes them in order, and refuses more than there are.
            if replaced >= self.unnamed.len() {
                return None;
            }
            fate[pos] = u32::try_from(replaced).ok().filter(|&i| i < DELETED)?;
            replaced += 1;
            Some(())
        })?;
        if replaced != self.unnamed.len() {
            return None;
        }
        link.delete.each_bit(count, |pos| {
            fate[pos] = DELETED;
            Some(())
        })?;
        let mut marks = self.marks;
        let mut pos = 0;
        entries(shared, self.oid_len, |entry| {
            let (hidden, gitlink) = match fate[pos] {
                KEEP => (entry.hidden, entry.gitlink),
                DELETED => (false, false),
                i => self.unnamed[i as usize],
            };
            pos += 1;
            if hidden {
                marks.hidden.insert(entry.name.to_vec());
            }
            if gitlink {
                marks.gitlinks.insert(entry.name.to_vec());
            }
        })?;
        Some(marks)
    }
}

/// One entry of an index as read.
struct Entry<'a> {
    /// Empty for an entry of a split index that replaces one of the shared index's.
    name: &'a [u8],
    hidden: bool,
    gitlink: bool,
}

fn parse_with(data: &[u8], oid_len: usize) -> Option<Index> {
    let mut marks = Marks::default();
    let mut unnamed = Vec::new();
    let mut named = false;
    let mut unnamed_late = false;
    let extensions = entries(data, oid_len, |entry| {
        if entry.name.is_empty() {
            unnamed.push((entry.hidden, entry.gitlink));
            unnamed_late |= named;
            return;
        }
        named = true;
        if entry.hidden {
            marks.hidden.insert(entry.name.to_vec());
        }
        if entry.gitlink {
            marks.gitlinks.insert(entry.name.to_vec());
        }
    })?;
    let mut link = None;
    for (signature, body) in extensions {
        if signature == b"link" {
            link = Some(read_link(body, oid_len)?);
        }
    }
    Some(Index {
        oid_len,
        marks,
        unnamed,
        unnamed_late,
        link,
    })
}

/// The `link` extension's body: the shared index's object name, then, unless the index
/// replaces and deletes nothing, the delete and the replace bitmaps (`read_link_extension`).
fn read_link(body: &[u8], oid_len: usize) -> Option<Link> {
    let shared = body.get(..oid_len)?.to_vec();
    let rest = &body[oid_len..];
    if rest.is_empty() {
        return Some(Link {
            shared,
            delete: Ewah::default(),
            replace: Ewah::default(),
        });
    }
    let (delete, used) = Ewah::read(rest)?;
    let (replace, more) = Ewah::read(&rest[used..])?;
    // git refuses anything after them.
    (used + more == rest.len()).then_some(Link {
        shared,
        delete,
        replace,
    })
}

/// A bitmap in git's EWAH form (`ewah/ewah_io.c`, `ewah_bitmap.c`): 64-bit words, each run
/// word saying how many words of all zeros or all ones come next, then how many literal words
/// follow it.
#[derive(Debug, Default)]
struct Ewah {
    words: Vec<u64>,
}

impl Ewah {
    /// A bitmap at the start of `data` (`ewah_read_mmap`): its size in bits, its number of
    /// words, the words and the position of the last run word, all big-endian. The bitmap and
    /// how many bytes it took.
    fn read(data: &[u8]) -> Option<(Ewah, usize)> {
        let words = usize::try_from(be32(data, 4)?).ok()?;
        let end = words.checked_mul(8)?.checked_add(8)?;
        let words = data
            .get(8..end)?
            .chunks_exact(8)
            .map(|w| u64::from_be_bytes(w.try_into().expect("eight bytes")))
            .collect();
        be32(data, end)?;
        Some((Ewah { words }, end + 4))
    }

    /// Calls `f` with each set bit's position, in order, as git's `ewah_each_bit` does; `None`
    /// as soon as `f` says so, or a position is `limit` or more (git refuses a split index
    /// whose bitmaps name entries the shared index does not have), or the words end before a
    /// run word's literal words do.
    fn each_bit(&self, limit: usize, mut f: impl FnMut(usize) -> Option<()>) -> Option<()> {
        let mut pos = 0usize;
        let mut at = 0;
        while let Some(&word) = self.words.get(at) {
            let run = usize::try_from((word >> 1) & 0xffff_ffff)
                .ok()?
                .checked_mul(64)?;
            let literals = usize::try_from(word >> 33).ok()?;
            if word & 1 != 0 {
                if run > 0 && pos.checked_add(run)? > limit {
                    return None;
                }
                for p in pos..pos + run {
                    f(p)?;
                }
            }
            pos = pos.checked_add(run)?;
            at += 1;
            for _ in 0..literals {
                let literal = *self.words.get(at)?;
                for bit in 0..64 {
                    if literal & (1 << bit) != 0 {
                        let p = pos + bit;
                        if p >= limit {
                            return None;
                        }
                        f(p)?;
                    }
                }
                pos = pos.checked_add(64)?;
                at += 1;
            }
        }
        Some(())
    }
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

/// Calls `each` with every entry of the index at `data`, read with `oid_len`-byte object names,
/// as git reads it (`create_from_disk`); its extensions, by signature, when the entries,
/// extensions and checksum fill the file exactly, `None` when they do not.
fn entries(
    data: &[u8],
    oid_len: usize,
    mut each: impl FnMut(Entry<'_>),
) -> Option<Vec<(&[u8], &[u8])>> {
    if data.get(..4)? != b"DIRC" {
        return None;
    }
    let version = be32(data, 4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = be32(data, 8)?;
    let mut at = 12;
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
            &previous[..]
        } else {
            let rest = data.get(name_at..)?;
            let len = if len == usize::from(NAME_MASK) {
                rest.iter().position(|&b| b == 0)?
            } else {
                len
            };
            let name = rest.get(..len)?;
            // One to eight NULs, so the entry's length is a multiple of eight.
            at = start + ((name_at - start + len + 8) & !7);
            name
        };
        if at > data.len() {
            return None;
        }
        each(Entry {
            name,
            hidden: flags & ASSUME_VALID != 0 || skip_worktree,
            gitlink: mode & MODE_TYPE == MODE_GITLINK,
        });
    }
    // Extensions (a four-byte signature and a 32-bit length each), then the checksum.
    let end = data.len().checked_sub(oid_len)?;
    let mut extensions = Vec::new();
    while at < end {
        let start = at;
        let size = usize::try_from(be32(data, start + 4)?).ok()?;
        let body = start + 8;
        at = body.checked_add(size)?;
        extensions.push((&data[start..start + 4], data.get(body..at)?));
    }
    (at == end).then_some(extensions)
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
        let tree: &[u8] = if extension { b"TREE\0\0\0\x03abc" } else { b"" };
        index_with(version, oid_len, entries, tree)
    }

    /// An index with `extensions` (each a signature, a length and its body) after its entries.
    fn index_with(
        version: u32,
        oid_len: usize,
        entries: &[Entry<'_>],
        extensions: &[u8],
    ) -> Vec<u8> {
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
        out.extend(extensions);
        out.extend(std::iter::repeat_n(0x11, oid_len));
        out
    }

    /// A bitmap with `bits` set as git writes it: a run word of no run, then literal words.
    fn ewah(bits: &[usize]) -> Vec<u8> {
        let literals = bits.iter().max().map_or(0, |&m| m / 64 + 1);
        let mut words = vec![0u64; literals];
        for &b in bits {
            words[b / 64] |= 1 << (b % 64);
        }
        words.insert(0, (literals as u64) << 33);
        ewah_words(bits.iter().max().map_or(0, |&m| m + 1), &words)
    }

    fn ewah_words(bit_size: usize, words: &[u64]) -> Vec<u8> {
        let mut out = u32::try_from(bit_size).unwrap().to_be_bytes().to_vec();
        out.extend(u32::try_from(words.len()).unwrap().to_be_bytes());
        for w in words {
            out.extend(w.to_be_bytes());
        }
        out.extend(0u32.to_be_bytes());
        out
    }

    /// A `link` extension naming the shared index whose checksum is `shared` (all bytes one
    /// value), with its delete and replace bitmaps.
    fn link(shared: u8, oid_len: usize, bitmaps: &[u8]) -> Vec<u8> {
        let mut out = b"link".to_vec();
        out.extend(
            u32::try_from(oid_len + bitmaps.len())
                .unwrap()
                .to_be_bytes(),
        );
        out.extend(std::iter::repeat_n(shared, oid_len));
        out.extend(bitmaps);
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
                    let marks = parse(&data).map(Index::marks).unwrap_or_else(|| {
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
        let marks = parse(&index(2, 20, &v2, true)).unwrap().marks();
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
        .unwrap()
        .marks();
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
        .unwrap()
        .marks();
        let added = before.added_in(&after);
        assert_eq!(added.hidden, set(&["secret.rs"]));
        assert_eq!(added.gitlinks, set(&["new"]));
        assert!(after.added_in(&after).is_empty());
    }

    #[test]
    fn a_split_index_reads_with_the_shared_index_it_names() {
        // The shared index: b hidden, d another repository.
        let shared = [
            entry(b"a"),
            Entry {
                assume_valid: true,
                ..entry(b"b")
            },
            entry(b"c"),
            Entry {
                mode: MODE_GITLINK,
                ..entry(b"d")
            },
            entry(b"e"),
        ];
        // The split index: entries without a name replace c (now hidden) and d (now a file),
        // b is deleted, and f (another repository) and g (hidden) are new.
        let split = [
            Entry {
                skip_worktree: true,
                ..entry(b"")
            },
            entry(b""),
            Entry {
                mode: MODE_GITLINK,
                ..entry(b"f")
            },
            Entry {
                assume_valid: true,
                ..entry(b"g")
            },
        ];
        let bitmaps = |delete: &[usize], replace: &[usize]| [ewah(delete), ewah(replace)].concat();
        for version in [3, 4] {
            for oid_len in [20, 32] {
                let shared_data = index(version, oid_len, &shared, true);
                let data = index_with(
                    version,
                    oid_len,
                    &split,
                    &link(0x11, oid_len, &bitmaps(&[1], &[2, 3])),
                );
                let split_index = parse(&data).unwrap();
                assert_eq!(
                    split_index.shared_index(),
                    Some(format!("sharedindex.{}", "11".repeat(oid_len)))
                );
                let marks = split_index.merged(&shared_data).unwrap();
                assert_eq!(marks.hidden, set(&["c", "g"]), "{version}, {oid_len}");
                assert_eq!(marks.gitlinks, set(&["f"]));
            }
        }

        let shared_data = index(3, 20, &shared, false);
        let merged = |entries: &[Entry<'_>], link: Vec<u8>| {
            parse(&index_with(3, 20, entries, &link))?.merged(&shared_data)
        };
        // All in the shared index, as `git update-index --split-index` leaves it.
        let marks = merged(&[], link(0x11, 20, &bitmaps(&[], &[]))).unwrap();
        assert_eq!(marks.hidden, set(&["b"]));
        assert_eq!(marks.gitlinks, set(&["d"]));
        // A link with no bitmaps replaces and deletes nothing.
        assert_eq!(merged(&[], link(0x11, 20, &[])), Some(marks));
        // What git refuses: fewer or more entries without a name than replaced ones, an entry
        // without a name after one with, a position past the shared index's end (a run of
        // ones too), bitmaps cut short or followed by more.
        assert!(merged(&split, link(0x11, 20, &bitmaps(&[], &[2]))).is_none());
        assert!(merged(&split[..1], link(0x11, 20, &bitmaps(&[], &[2, 3]))).is_none());
        let late = [split[2], split[0], split[1], split[3]];
        assert!(merged(&late, link(0x11, 20, &bitmaps(&[], &[2, 3]))).is_none());
        assert!(merged(&split, link(0x11, 20, &bitmaps(&[5], &[2, 3]))).is_none());
        assert!(merged(&split, link(0x11, 20, &bitmaps(&[], &[2, 5]))).is_none());
        let ones = [ewah(&[]), ewah_words(64, &[0b11])].concat();
        assert!(merged(&split[..0], link(0x11, 20, &ones)).is_none());
        let full = bitmaps(&[1], &[2, 3]);
        assert!(
            parse(&index_with(
                3,
                20,
                &split,
                &link(0x11, 20, &full[..full.len() - 1])
            ))
            .is_none()
        );
        let more = [&full[..], b"x"].concat();
        assert!(parse(&index_with(3, 20, &split, &link(0x11, 20, &more))).is_none());
        // A literal word the bitmap does not hold.
        let short = [ewah(&[]), ewah_words(1, &[1 << 33])].concat();
        assert!(merged(&split[..0], link(0x11, 20, &short)).is_none());
        // A link naming no shared index (all zeros) is an index of its own.
        let own = parse(&index_with(3, 20, &split[2..], &link(0, 20, &[]))).unwrap();
        assert_eq!(own.shared_index(), None);
        assert_eq!(own.marks().hidden, set(&["g"]));
    }
}
