//! NVMe device names, the one parser of them: controllers (`nvme0`), namespaces (`nvme0n1`),
//! multipath paths (`nvme0c1n1`) and the controller a name belongs to.

/// The decimal digits of a whole string, non-empty.
fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is a controller (`nvme0`), not a namespace or anything else.
pub fn is_controller(name: &str) -> bool {
    name.strip_prefix("nvme").is_some_and(digits)
}

/// Whether `name` is a namespace's block device (`nvme0n1`), not a partition of one.
pub fn is_namespace(name: &str) -> bool {
    name.strip_prefix("nvme").and_then(|r| r.split_once('n')).is_some_and(|(c, n)| digits(c) && digits(n))
}

/// The controller's number, for ordering controllers as the kernel numbers them.
pub fn controller_number(name: &str) -> Option<u64> {
    name.strip_prefix("nvme").filter(|r| digits(r))?.parse().ok()
}

/// The block device of a namespace entry: `nvme0n1` as it is; a multipath path `nvme0c1n1` is
/// the disk `nvme0n1`. None for anything else.
pub fn namespace_device(entry: &str) -> Option<String> {
    let rest = entry.strip_prefix("nvme")?;
    let (head, ns) = rest.split_once('n')?;
    if !digits(ns) {
        return None;
    }
    let subsys = match head.split_once('c') {
        Some((s, c)) if digits(s) && digits(c) => s,
        None if digits(head) => head,
        _ => return None,
    };
    Some(format!("nvme{subsys}n{ns}"))
}

/// The controller a device name belongs to: `nvme0` for `nvme0` and `nvme0n1`.
pub fn controller_of(dev: &str) -> Option<&str> {
    let rest = dev.strip_prefix("nvme")?;
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    (end > 0 && (end == rest.len() || rest[end..].starts_with('n'))).then(|| &dev[..4 + end])
}

/// Whether `namespace` (`nvme0n1`) is one of `controller`'s (`nvme0`).
pub fn belongs_to(namespace: &str, controller: &str) -> bool {
    namespace.strip_prefix(controller).and_then(|r| r.strip_prefix('n')).is_some_and(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        assert!(is_controller("nvme0") && is_controller("nvme12"));
        assert!(!is_controller("nvme0n1") && !is_controller("nvme-fabrics") && !is_controller("nvme"));
        assert!(is_namespace("nvme0n1") && is_namespace("nvme12n3"));
        for other in ["nvme0", "nvme0n1p1", "nvme0c1n1", "nvmen1", "sda", "nvme0n"] {
            assert!(!is_namespace(other), "{other}");
        }
        assert_eq!(controller_number("nvme12"), Some(12));
        assert_eq!(controller_number("nvme1n1"), None);
        assert_eq!(namespace_device("nvme0n1").as_deref(), Some("nvme0n1"));
        assert_eq!(namespace_device("nvme1c2n3").as_deref(), Some("nvme1n3"));
        for bad in ["nvme0", "hwmon3", "nvme0n", "nvmexn1", "nvme0c1", "device", "nvme0n1p1"] {
            assert_eq!(namespace_device(bad), None, "{bad}");
        }
        assert_eq!(controller_of("nvme0"), Some("nvme0"));
        assert_eq!(controller_of("nvme0n1"), Some("nvme0"));
        assert_eq!(controller_of("nvme12n3"), Some("nvme12"));
        for other in ["nvme", "nvmex", "nvme0c1n1", "sda", ""] {
            assert_eq!(controller_of(other), None, "{other}");
        }
        assert!(belongs_to("nvme0n1", "nvme0") && !belongs_to("nvme10n1", "nvme1"));
        assert!(!belongs_to("nvme0n1p1", "nvme0") && !belongs_to("nvme0", "nvme0"));
    }

    proptest! {
        #[test]
        fn never_panic(s in "(nvme)?[0-9cnp]{0,8}|\\PC{0,12}") {
            let _ = (is_controller(&s), is_namespace(&s), controller_number(&s), namespace_device(&s));
            if let Some(c) = controller_of(&s) {
                prop_assert!(is_controller(c));
            }
        }
    }
}
