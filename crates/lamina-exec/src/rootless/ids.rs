//! Subordinate id ranges (`/etc/subuid`, `/etc/subgid`) and the id maps `newuidmap` and
//! `newgidmap` are given: container id 0 is the user's own id, ids from 1 on are the
//! user's subordinate ranges, in file order, one after the other.

use std::path::Path;

/// One `start:count` range of a user's subordinate ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub start: u64,
    pub count: u64,
}

/// The ranges `text` (the contents of a subid file) gives the user `name` with id `id`:
/// lines `NAME:START:COUNT` or `ID:START:COUNT`, as `newuidmap` reads them. Malformed lines
/// and empty ranges are skipped, as `newuidmap` skips them.
pub(crate) fn ranges_for(text: &str, name: Option<&str>, id: u32) -> Vec<Range> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || (Some(owner) != name && owner != id) {
                return None;
            }
            let range = Range {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// Reads `file` and returns the user's ranges (none when the file is missing).
pub(crate) fn read_ranges(file: &Path, name: Option<&str>, id: u32) -> Vec<Range> {
    std::fs::read_to_string(file)
        .map(|text| ranges_for(&text, name, id))
        .unwrap_or_default()
}

/// The `newuidmap`/`newgidmap` arguments after the pid: `0 <own> 1`, then each range at the
/// next free container id.
pub(crate) fn map_args(own: u32, ranges: &[Range]) -> Vec<String> {
    let mut args = vec!["0".to_owned(), own.to_string(), "1".to_owned()];
    let mut next = 1u64;
    for range in ranges {
        args.extend([
            next.to_string(),
            range.start.to_string(),
            range.count.to_string(),
        ]);
        next += range.count;
    }
    args
}

/// The user's login name from `passwd` text (`name:x:uid:...`).
pub(crate) fn user_name(passwd: &str, uid: u32) -> Option<String> {
    let uid = uid.to_string();
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_by_name_or_id_and_skip_bad_lines() {
        let text = "alice:100000:65536\nbob:165536:65536\n1001:300000:10\nalice:x:5\nalice:1:0\n\
                    alice:400000:2:extra\n";
        assert_eq!(
            ranges_for(text, Some("alice"), 1001),
            [
                Range {
                    start: 100000,
                    count: 65536
                },
                Range {
                    start: 300000,
                    count: 10
                }
            ]
        );
        assert!(ranges_for(text, Some("carol"), 7).is_empty());
        assert_eq!(ranges_for(text, None, 1001).len(), 1);
    }

    #[test]
    fn map_puts_the_user_at_zero_and_ranges_after_each_other() {
        let ranges = [
            Range {
                start: 100000,
                count: 65536,
            },
            Range {
                start: 300000,
                count: 10,
            },
        ];
        assert_eq!(
            map_args(1001, &ranges),
            [
                "0", "1001", "1", "1", "100000", "65536", "65537", "300000", "10"
            ]
        );
    }

    #[test]
    fn user_name_is_found_by_uid() {
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1001).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 5), None);
    }
}
