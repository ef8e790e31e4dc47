//! From TOML text to a checked [`Policy`]. serde only finds the keys (refusing unknown ones) and
//! keeps every value with its span; the checks are ours, so that each error names the offending
//! value's position and says what would be accepted.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::{Action, Call, Cidr, Executable, Family, Kind, Policy, PolicyError, Rule};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<Spanned<Raw>>,
    default: Option<Spanned<Raw>>,
    #[serde(rename = "default-errno")]
    default_errno: Option<Spanned<Raw>>,
    rule: Option<RawRules>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<Raw>>,
    family: Option<Spanned<Raw>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<Raw>>,
    destination: Option<Spanned<Raw>>,
    port: Option<Spanned<Raw>>,
    executable: Option<Spanned<Raw>>,
    call: Option<Spanned<Raw>>,
    action: Option<Spanned<Raw>>,
    errno: Option<Spanned<Raw>>,
}

/// Any TOML value, typed loosely so that a wrong type is reported by our checks, not serde's.
enum Raw {
    Str(String),
    Int(i64),
    List(Vec<Spanned<Raw>>),
    Other(&'static str),
}

/// The `[[rule]]` array; a lone `[rule]` table is refused with a hint.
struct RawRules(Vec<Spanned<RawRule>>);

/// Errnos a policy may name; the numbers are Linux's (checked against libc in the tests).
const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", 1),
    ("EINTR", 4),
    ("EACCES", 13),
    ("EINVAL", 22),
    ("EMFILE", 24),
    ("ENOSYS", 38),
    ("EPROTONOSUPPORT", 93),
    ("EOPNOTSUPP", 95),
    ("EAFNOSUPPORT", 97),
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ENETDOWN", 100),
    ("ENETUNREACH", 101),
    ("ECONNRESET", 104),
    ("ENOBUFS", 105),
    ("ETIMEDOUT", 110),
    ("ECONNREFUSED", 111),
    ("EHOSTUNREACH", 113),
];

const DEFAULT_ERRNO: i32 = 13; // EACCES

/// Deny's errno here is a placeholder, replaced by the `errno` key's (or the default).
const ACTIONS: &[(&str, Action)] = &[
    ("userspace", Action::Userspace),
    ("kernel", Action::Kernel),
    ("audit", Action::Audit),
    ("deny", Action::Deny { errno: DEFAULT_ERRNO }),
];
const FAMILIES: &[(&str, Family)] = &[("inet", Family::Inet), ("inet6", Family::Inet6)];
const KINDS: &[(&str, Kind)] = &[("stream", Kind::Stream), ("dgram", Kind::Datagram)];
const CALLS: &[(&str, Call)] = &[
    ("socket", Call::Socket),
    ("connect", Call::Connect),
    ("bind", Call::Bind),
    ("sendto", Call::SendTo),
];

pub(crate) fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let at = Checker { text, origin };
    let raw: RawPolicy = toml::from_str(text).map_err(|error| {
        let reason = error.message().trim().replace('\n', "; ");
        at.error(error.span().unwrap_or(0..0), reason)
    })?;

    let Some(version) = &raw.version else {
        return Err(at.error(0..0, "missing `version = 1` at the top of the policy"));
    };
    at.check(version, |raw| match raw {
        Raw::Int(1) => Ok(()),
        Raw::Int(n) => Err(format!("unsupported version {n}: this joyride reads version 1")),
        other => Err(format!("expected version = 1, found {}", other.what())),
    })?;

    let default = match &raw.default {
        None => Action::Userspace,
        Some(value) => at.check(value, |raw| keyword("default", raw, ACTIONS))?,
    };
    let default = at.with_errno(default, &raw.default_errno, "default", "default-errno")?;

    let mut names: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::new();
    for (index, rule) in raw.rule.map(|rules| rules.0).unwrap_or_default().into_iter().enumerate() {
        let (span, rule) = (rule.span(), rule.into_inner());
        let name = match &rule.name {
            None => format!("rule {}", index + 1),
            Some(name) => at.check(name, |raw| match raw {
                Raw::Str(text) if !text.is_empty() => Ok(text.clone()),
                _ => Err("expected a rule name: a non-empty string".to_owned()),
            })?,
        };
        let name_span = rule.name.as_ref().map_or(span.clone(), |name| name.span());
        if let Some(first) = names.insert(name.clone(), at.line_column(name_span.start).0) {
            let reason = format!(
                "duplicate rule name \"{name}\": the rule on line {first} has it already; \
                 give each rule its own name"
            );
            return Err(at.error(name_span, reason));
        }
        let Some(action) = &rule.action else {
            let reason = "rule has no `action`: add action = userspace, kernel, audit or deny";
            return Err(at.error(span, reason));
        };
        let action = at.check(action, |raw| keyword("action", raw, ACTIONS))?;
        rules.push(Rule {
            name,
            action: at.with_errno(action, &rule.errno, "action", "errno")?,
            families: at.list(&rule.family, "family", |raw| keyword("family", raw, FAMILIES))?,
            kinds: at.list(&rule.kind, "type", |raw| keyword("type", raw, KINDS))?,
            calls: at.list(&rule.call, "call", |raw| keyword("call", raw, CALLS))?,
            destinations: at.list(&rule.destination, "destination", cidr)?,
            ports: at.list(&rule.port, "port", ports)?,
            executables: at.list(&rule.executable, "executable", executable)?,
        });
    }
    Ok(Policy { default, rules })
}

/// Turns spans into positioned errors.
struct Checker<'t> {
    text: &'t str,
    origin: &'t str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, reason: impl Into<String>) -> PolicyError {
        let (line, column) = self.line_column(span.start);
        PolicyError::Invalid { origin: self.origin.to_owned(), line, column, reason: reason.into() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
    }

    /// Runs a check on one value; its reason becomes an error at the value's position.
    fn check<T>(
        &self,
        value: &Spanned<Raw>,
        check: impl FnOnce(&Raw) -> Result<T, String>,
    ) -> Result<T, PolicyError> {
        check(value.get_ref()).map_err(|reason| self.error(value.span(), reason))
    }

    /// A single item or a one-level list of them, each checked; None when the key is absent.
    fn list<T>(
        &self,
        value: &Option<Spanned<Raw>>,
        key: &str,
        item: impl Fn(&Raw) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, PolicyError> {
        let Some(value) = value else { return Ok(None) };
        match value.get_ref() {
            Raw::List(items) if items.is_empty() => Err(self.error(
                value.span(),
                format!("empty `{key}` list: leave `{key}` out to match any {key}"),
            )),
            Raw::List(items) => items.iter().map(|raw| self.check(raw, &item)).collect(),
            _ => self.check(value, &item).map(|one| vec![one]),
        }
        .map(Some)
    }

    /// Completes a parsed action with its errno key, which only deny may have.
    fn with_errno(
        &self,
        action: Action,
        errno: &Option<Spanned<Raw>>,
        action_key: &str,
        errno_key: &str,
    ) -> Result<Action, PolicyError> {
        match (action, errno) {
            (action, None) => Ok(action),
            (Action::Deny { .. }, Some(errno)) => {
                Ok(Action::Deny { errno: self.check(errno, errno_number)? })
            }
            (_, Some(errno)) => Err(self.error(
                errno.span(),
                format!("`{errno_key}` is only allowed with {action_key} = \"deny\""),
            )),
        }
    }
}

fn keyword<T: Copy>(key: &str, raw: &Raw, table: &[(&str, T)]) -> Result<T, String> {
    let expected = one_of(table.iter().map(|(name, _)| *name));
    match raw {
        Raw::Str(word) => match table.iter().find(|(name, _)| name == word) {
            Some((_, value)) => Ok(*value),
            None => Err(format!("unknown {key} \"{word}\": expected {expected}")),
        },
        other => Err(format!("expected a {key} ({expected}), found {}", other.what())),
    }
}

fn errno_number(raw: &Raw) -> Result<i32, String> {
    match raw {
        Raw::Int(n @ 1..=4095) => Ok(*n as i32),
        Raw::Int(n) => {
            Err(format!("errno {n} is out of range: expected 1..=4095 or a name such as EACCES"))
        }
        Raw::Str(name) => match ERRNOS.iter().find(|(known, _)| known == name) {
            Some((_, n)) => Ok(*n),
            None => Err(format!(
                "unknown errno \"{name}\": expected 1..=4095 or {}",
                one_of(ERRNOS.iter().map(|(name, _)| *name))
            )),
        },
        other => Err(format!("expected an errno (a name or 1..=4095), found {}", other.what())),
    }
}

fn cidr(raw: &Raw) -> Result<Cidr, String> {
    let Raw::Str(text) = raw else {
        return Err(format!("expected a CIDR such as \"10.0.0.0/8\", found {}", raw.what()));
    };
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text.as_str(), None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        format!(
            "\"{text}\" is not an IP address: \
             expected e.g. \"127.0.0.0/8\", \"10.1.2.3\" or \"::1/128\""
        )
    })?;
    let (bits, version) = if address.is_ipv4() { (32, "IPv4") } else { (128, "IPv6") };
    let prefix = match prefix {
        None => bits,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u8>() {
                Ok(prefix) if prefix <= bits => prefix,
                _ => {
                    return Err(format!(
                        "prefix /{digits} is too long for an {version} address: at most /{bits}"
                    ))
                }
            }
        }
        Some(_) => return Err(format!("bad prefix in \"{text}\": expected a number 0..={bits}")),
    };
    Ok(match address {
        IpAddr::V4(ip) => Cidr::V4 { network: u32::from(ip) & crate::mask32(prefix), prefix },
        IpAddr::V6(ip) => Cidr::V6 { network: u128::from(ip) & crate::mask128(prefix), prefix },
    })
}

fn ports(raw: &Raw) -> Result<(u16, u16), String> {
    let port = |n: i64| match u16::try_from(n) {
        Ok(port @ 1..) => Ok(port),
        _ => Err(format!("port {n} is out of range: expected 1..=65535")),
    };
    match raw {
        Raw::Int(n) => port(*n).map(|port| (port, port)),
        Raw::Str(text) => {
            let number = |part: &str| {
                part.trim().parse::<i64>().map_err(|_| {
                    format!("bad port range \"{text}\": expected \"low-high\", e.g. \"8000-8100\"")
                })
            };
            let (low, high) = text.split_once('-').unwrap_or((text, text));
            let (low, high) = (port(number(low)?)?, port(number(high)?)?);
            if low > high {
                return Err(format!(
                    "port range \"{text}\" is reversed: write the lower port first"
                ));
            }
            Ok((low, high))
        }
        other => Err(format!(
            "expected a port (1..=65535) or a range (\"8000-8100\"), found {}",
            other.what()
        )),
    }
}

fn executable(raw: &Raw) -> Result<Executable, String> {
    let Raw::Str(path) = raw else {
        return Err(format!("expected an executable path, found {}", raw.what()));
    };
    if !path.starts_with('/') {
        return Err(format!(
            "executable \"{path}\" is not an absolute path: \
             write e.g. \"/usr/bin/curl\" or \"/opt/app/*\""
        ));
    }
    match path.find('*') {
        None => Ok(Executable::Exact(path.clone())),
        Some(star) if star == path.len() - 1 => Ok(Executable::Prefix(path[..star].to_owned())),
        Some(_) => {
            Err(format!("executable \"{path}\": `*` may only end a pattern, as in \"/opt/app/*\""))
        }
    }
}

/// "a, b or c"
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl Raw {
    fn what(&self) -> &'static str {
        match self {
            Raw::Str(_) => "a string",
            Raw::Int(_) => "an integer",
            Raw::List(_) => "a list",
            Raw::Other(what) => what,
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Other("an integer too large"), Raw::Int))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Other("an integer too large"), Raw::Int))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Other("an integer too large"), Raw::Int))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Raw, E> {
                Ok(Raw::Other("a float"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Raw, E> {
                Ok(Raw::Other("a boolean"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Raw::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Raw::Other("a table or date"))
            }
        }
        deserializer.deserialize_any(RawVisitor)
    }
}

impl<'de> Deserialize<'de> for RawRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = RawRules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of tables: write each rule under its own [[rule]] header")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRules, A::Error> {
                let mut rules = Vec::new();
                while let Some(rule) = seq.next_element()? {
                    rules.push(rule);
                }
                Ok(RawRules(rules))
            }
        }
        deserializer.deserialize_seq(RulesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_have_the_c_library_numbers() {
        let libc = [
            libc::EPERM,
            libc::EINTR,
            libc::EACCES,
            libc::EINVAL,
            libc::EMFILE,
            libc::ENOSYS,
            libc::EPROTONOSUPPORT,
            libc::EOPNOTSUPP,
            libc::EAFNOSUPPORT,
            libc::EADDRINUSE,
            libc::EADDRNOTAVAIL,
            libc::ENETDOWN,
            libc::ENETUNREACH,
            libc::ECONNRESET,
            libc::ENOBUFS,
            libc::ETIMEDOUT,
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
        ];
        let ours: Vec<i32> = ERRNOS.iter().map(|(_, n)| *n).collect();
        assert_eq!(ours, libc);
        assert_eq!(DEFAULT_ERRNO, libc::EACCES);
    }

    #[test]
    fn line_and_column_count_characters() {
        let at = Checker { text: "ab\nçd\n\nx", origin: "" };
        let positions: Vec<_> = [0, 2, 3, 5, 6, 8, 9, 100].map(|o| at.line_column(o)).into();
        assert_eq!(positions, [(1, 1), (1, 3), (2, 1), (2, 2), (2, 3), (4, 1), (4, 2), (4, 2)]);
        // An offset inside a multi-byte character counts from the character's start.
        assert_eq!(at.line_column(4), (2, 1));
    }
}
