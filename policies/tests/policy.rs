//! The policy language from the outside: the shipped files, matching, and error positions.

use std::net::SocketAddr;
use std::path::Path;

use policies::{Action, Call, Decision, Family, Kind, Policy, PolicyError, Subject};

fn connect(destination: &str) -> Subject<'static> {
    let destination: SocketAddr = destination.parse().unwrap();
    let family = if destination.is_ipv4() { Family::Inet } else { Family::Inet6 };
    Subject {
        call: Call::Connect,
        family,
        kind: Kind::Stream,
        destination: Some(destination),
        executable: None,
    }
}

fn socket() -> Subject<'static> {
    Subject {
        call: Call::Socket,
        family: Family::Inet,
        kind: Kind::Stream,
        destination: None,
        executable: None,
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text, "test.toml").unwrap_or_else(|error| panic!("{error}"))
}

#[track_caller]
fn rejected(text: &str) -> String {
    match Policy::parse(text, "p.toml") {
        Ok(policy) => panic!("accepted: {policy:?}"),
        Err(error) => error.to_string(),
    }
}

const LOOPBACK: &str = "loopback stays with the kernel";

#[test]
fn default_policy_keeps_loopback_with_the_kernel() {
    let policy = Policy::default_policy();
    let kernel = Decision { action: Action::Kernel, rule: Some(LOOPBACK) };
    for loopback in ["127.0.0.1:5432", "127.255.0.9:80", "[::1]:53", "[::ffff:127.0.0.1]:6379"] {
        assert_eq!(policy.decide(&connect(loopback)), kernel, "{loopback}");
    }
    let userspace = Decision { action: Action::Userspace, rule: None };
    for other in ["10.77.0.1:80", "128.0.0.1:80", "[::2]:80", "[::ffff:10.0.0.1]:80"] {
        assert_eq!(policy.decide(&connect(other)), userspace, "{other}");
    }
    assert_eq!(policy.decide(&socket()), userspace);
    assert!(!policy.has_deny_rules());
}

#[test]
fn audit_only_and_kernel_only_decide_everything_by_default() {
    for (policy, action) in
        [(Policy::audit_only(), Action::Audit), (Policy::kernel_only(), Action::Kernel)]
    {
        for subject in [socket(), connect("127.0.0.1:1"), connect("[2001:db8::1]:443")] {
            assert_eq!(policy.decide(&subject), Decision { action, rule: None });
        }
        assert!(!policy.has_deny_rules());
    }
}

#[test]
fn first_matching_rule_wins() {
    let policy = policy(
        r#"
        version = 1
        default = "kernel"
        [[rule]]
        name = "dns denied"
        port = 53
        action = "deny"
        errno = "ECONNREFUSED"
        [[rule]]
        destination = "10.0.0.0/8"
        action = "userspace"
        [[rule]]
        name = "never reached for 10/8"
        destination = "10.1.0.0/16"
        action = "audit"
        "#,
    );
    let decide = |to| policy.decide(&connect(to));
    assert_eq!(
        decide("10.1.2.3:53"),
        Decision { action: Action::Deny { errno: libc::ECONNREFUSED }, rule: Some("dns denied") }
    );
    assert_eq!(decide("10.1.2.3:80"), Decision { action: Action::Userspace, rule: Some("rule 2") });
    assert_eq!(decide("11.0.0.1:80"), Decision { action: Action::Kernel, rule: None });
    assert!(policy.has_deny_rules());
}

#[test]
fn address_families_and_v4_mapped_destinations() {
    let policy = policy(
        r#"
        version = 1
        [[rule]]
        name = "v4"
        destination = ["192.168.1.77/24"]
        action = "kernel"
        [[rule]]
        name = "mapped"
        destination = "::ffff:0:0/96"
        action = "audit"
        [[rule]]
        name = "v6 datagrams"
        family = "inet6"
        type = "dgram"
        destination = "2001:db8::/32"
        action = "kernel"
        "#,
    );
    let rule = |to: &str| policy.decide(&connect(to)).rule;
    assert_eq!(rule("192.168.1.200:1"), Some("v4"), "host bits of the CIDR are ignored");
    assert_eq!(rule("[::ffff:192.168.1.5]:1"), Some("v4"));
    assert_eq!(rule("192.168.2.1:1"), None);
    assert_eq!(rule("[::ffff:8.8.8.8]:1"), Some("mapped"));
    assert_eq!(rule("[2001:db8::1]:1"), None, "a stream socket");
    let mut datagram = connect("[2001:db8::1]:1");
    datagram.kind = Kind::Datagram;
    assert_eq!(policy.decide(&datagram).rule, Some("v6 datagrams"));
    datagram.family = Family::Inet;
    assert_eq!(policy.decide(&datagram).rule, None);
}

#[test]
fn port_ranges_and_calls() {
    let policy = policy(
        r#"
        version = 1
        [[rule]]
        port = [53, "8000-8100", "443"]
        call = ["connect", "sendto"]
        action = "deny"
        errno = 113
        "#,
    );
    let deny = Action::Deny { errno: libc::EHOSTUNREACH };
    let action = |subject: &Subject| policy.decide(subject).action;
    for port in [53, 443, 8000, 8050, 8100] {
        assert_eq!(action(&connect(&format!("1.2.3.4:{port}"))), deny, "{port}");
    }
    for port in [52, 54, 7999, 8101] {
        assert_eq!(action(&connect(&format!("1.2.3.4:{port}"))), Action::Userspace, "{port}");
    }
    let mut bind = connect("0.0.0.0:8000");
    bind.call = Call::Bind;
    assert_eq!(action(&bind), Action::Userspace);
    let socket_rule = policy.decide(&Subject { call: Call::SendTo, ..socket() });
    assert_eq!(socket_rule.action, Action::Userspace, "a port rule needs an address");
}

#[test]
fn executables_exact_and_prefix() {
    let policy = policy(
        r#"
        version = 1
        [[rule]]
        executable = ["/usr/bin/curl", "/opt/app/*", "/usr/bin/python3*"]
        call = "socket"
        action = "kernel"
        "#,
    );
    let with = |path: Option<&str>| {
        let subject = Subject { executable: path.map(Path::new), ..socket() };
        policy.decide(&subject).action
    };
    for path in ["/usr/bin/curl", "/opt/app/bin/server", "/usr/bin/python3.11"] {
        assert_eq!(with(Some(path)), Action::Kernel, "{path}");
    }
    for path in ["/usr/bin/curl2", "/usr/bin/cur", "/opt/application", "/opt/app"] {
        assert_eq!(with(Some(path)), Action::Userspace, "{path}");
    }
    assert_eq!(with(None), Action::Userspace);
}

#[test]
fn deny_errnos_and_default_deny() {
    let policy = policy("version = 1\ndefault = \"deny\"\n");
    assert_eq!(policy.decide(&socket()).action, Action::Deny { errno: libc::EACCES });
    assert!(policy.has_deny_rules());
    let policy = policy_with_default_errno();
    assert_eq!(policy.decide(&socket()).action, Action::Deny { errno: libc::ENETUNREACH });
}

fn policy_with_default_errno() -> Policy {
    policy("version = 1\ndefault = \"deny\"\ndefault-errno = \"ENETUNREACH\"\n")
}

#[test]
fn errors_name_line_column_and_what_to_write() {
    let rule = |body: &str| format!("version = 1\n[[rule]]\naction = \"kernel\"\n{body}\n");
    let cases = [
        (String::new(), "p.toml:1:1: missing `version = 1` at the top of the policy"),
        ("version = 2".into(), "p.toml:1:11: unsupported version 2: this joyride reads version 1"),
        (
            "version = 1\ndefault = \"userpace\"".into(),
            "p.toml:2:11: unknown default \"userpace\": expected userspace, kernel, audit or deny",
        ),
        (
            "version = 1\n[[rule]]\naction = \"userpace\"".into(),
            "p.toml:3:10: unknown action \"userpace\": expected userspace, kernel, audit or deny",
        ),
        (
            "version = 1\n[[rule]]\nname = \"x\"".into(),
            "p.toml:2:1: rule has no `action`: add action = userspace, kernel, audit or deny",
        ),
        (
            rule("destination = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"),
            "p.toml:4:30: prefix /33 is too long for an IPv4 address: at most /32",
        ),
        (
            rule("  destination = \"::1/129\""),
            "p.toml:4:17: prefix /129 is too long for an IPv6 address: at most /128",
        ),
        (
            rule("destination = \"10.0.0.300\""),
            "p.toml:4:15: \"10.0.0.300\" is not an IP address: \
             expected e.g. \"127.0.0.0/8\", \"10.1.2.3\" or \"::1/128\"",
        ),
        (rule("port = [80, 0]"), "p.toml:4:13: port 0 is out of range: expected 1..=65535"),
        (rule("port = \"1-65536\""), "p.toml:4:8: port 65536 is out of range: expected 1..=65535"),
        (
            rule("port = \"90-80\""),
            "p.toml:4:8: port range \"90-80\" is reversed: write the lower port first",
        ),
        (rule("port = []"), "p.toml:4:8: empty `port` list: leave `port` out to match any port"),
        (rule("errno = 1"), "p.toml:4:9: `errno` is only allowed with action = \"deny\""),
        (
            "version = 1\ndefault = \"deny\"\ndefault-errno = 4096".into(),
            "p.toml:3:17: errno 4096 is out of range: expected 1..=4095 or a name such as EACCES",
        ),
        (
            rule("family = [\"inet\", 6]"),
            "p.toml:4:19: expected a family (inet or inet6), found an integer",
        ),
        (
            rule("executable = [\"/opt/é\", \"bin/x\"]"),
            "p.toml:4:25: executable \"bin/x\" is not an absolute path: \
             write e.g. \"/usr/bin/curl\" or \"/opt/app/*\"",
        ),
        (
            rule("destinaton = \"::1\""),
            "p.toml:4:1: unknown field `destinaton`, expected one of `name`, `family`, `type`, \
             `destination`, `port`, `executable`, `call`, `action`, `errno`",
        ),
    ];
    for (text, expected) in &cases {
        assert_eq!(rejected(text), *expected, "{text}");
    }
}

#[test]
fn every_error_class_is_positioned_at_its_value() {
    // (body of a deny rule on line 4, column where the offending value starts)
    let cases = [
        ("errno = \"EFOO\"", 9),
        ("errno = true", 9),
        ("type = \"datagram\"", 8),
        ("call = [\"connect\", \"accept\"]", 20),
        ("family = { a = 1 }", 10),
        ("port = \"http\"", 8),
        ("port = 99999999999999999999", 8),
        ("executable = \"/opt/*/bin\"", 14),
        ("name = \"\"", 8),
        ("destination = \"10.0.0.0/x\"", 15),
        ("type = [[\"stream\"]]", 9),
        ("action = \"deny\"", 1), // a duplicate key: TOML's own error
    ];
    for (body, column) in cases {
        let text = format!("version = 1\n[[rule]]\naction = \"deny\"\n{body}\n");
        let Err(PolicyError::Invalid { origin, line, column: at, reason }) =
            Policy::parse(&text, "p.toml")
        else {
            panic!("accepted: {body}");
        };
        assert_eq!((origin.as_str(), line, at), ("p.toml", 4, column), "{body}: {reason}");
        assert!(!reason.is_empty() && !reason.contains('\n'), "{body}: {reason:?}");
    }
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("policies-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "version = 1\ndefault = \"kernal\"\n").unwrap();
    let error = Policy::load(&path).unwrap_err().to_string();
    let missing = Policy::load(&dir.join("missing.toml")).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        error,
        format!(
            "{}:2:11: unknown default \"kernal\": expected userspace, kernel, audit or deny",
            path.display()
        )
    );
    let PolicyError::Read { source, .. } = missing else { panic!("{missing}") };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
}

/// Random bytes, and random damage to a valid policy, are rejected or accepted but never panic.
#[test]
fn arbitrary_input_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = include_str!("../shipped/default.toml").to_owned()
        + "[[rule]]\nport = [53, \"80-90\"]\nexecutable = \"/x/*\"\naction = \"deny\"\nerrno = 1\n";
    let alphabet = b"[]{}\"'=,.-/*:#\n 0123456789abcdefx";
    let subjects = [socket(), connect("127.0.0.1:53"), connect("[::ffff:1.2.3.4]:85")];
    for round in 0..3000 {
        let text = if round % 2 == 0 {
            let bytes: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = alphabet[(next() as usize) % alphabet.len()];
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        if let Ok(policy) = Policy::parse(&text, "fuzz") {
            for subject in &subjects {
                policy.decide(subject);
            }
        }
    }
}

#[test]
fn only_policies_with_executable_rules_need_the_program_path() {
    assert!(!Policy::default_policy().needs_executable());
    assert!(!Policy::kernel_only().needs_executable());
    let with =
        policy("version = 1\n[[rule]]\nexecutable = [\"/usr/bin/curl\"]\naction = \"kernel\"\n");
    assert!(with.needs_executable());
}
