//! `joyride ss`: joyride-stackd's sockets, listed the way `ss -tani` lists the kernel's.

use std::io::Write;

use anyhow::{bail, Context};
use stackd::client::Client;
use stackd::proto::{Operation, Reply, SocketLine};

/// The most pages one listing asks for: far beyond any daemon's socket count at
/// [`stackd::proto::SOCKETS_PER_PAGE`] a page, it only stops a listing that sockets created
/// faster than they are read would never end.
const MAX_PAGES: usize = 100_000;

/// Asks the daemon for all its sockets, page by page, and prints them to `out` as
/// [`format_sockets`] does. Returns how many sockets were printed.
pub fn print_sockets(client: &mut Client, out: &mut dyn Write) -> anyhow::Result<usize> {
    let lines = fetch_sockets(client)?;
    out.write_all(format_sockets(&lines).as_bytes()).context("cannot print the socket list")?;
    out.flush().context("cannot print the socket list")?;
    Ok(lines.len())
}

fn fetch_sockets(client: &mut Client) -> anyhow::Result<Vec<SocketLine>> {
    let mut lines: Vec<SocketLine> = Vec::new();
    for _ in 0..MAX_PAGES {
        let reply = client
            .call(Operation::Sockets { offset: lines.len() })
            .context("cannot list joyride-stackd's sockets")?;
        let Reply::Sockets { total, sockets } = reply else {
            bail!("joyride-stackd answered a socket listing with {reply:?}");
        };
        // Sockets closed between two pages shift the rest forward: a few may be missed, none
        // listed twice, and an empty page ends the listing.
        if sockets.is_empty() {
            break;
        }
        lines.extend(sockets);
        if lines.len() >= total {
            break;
        }
    }
    Ok(lines)
}

const HEADER: [&str; 7] =
    ["Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Process"];

/// An address with port 0 shown as ss shows it: "0.0.0.0:*".
fn show_address(addr: &str) -> String {
    match addr.strip_suffix(":0") {
        Some(host) => format!("{host}:*"),
        None => addr.to_owned(),
    }
}

/// The listing: a header, then one line per socket in left-aligned columns (Netid, State,
/// Recv-Q, Send-Q, local and peer address, the owning processes), each followed by its TCP
/// details on an indented line when it has any.
pub fn format_sockets(lines: &[SocketLine]) -> String {
    let rows: Vec<[String; 7]> = lines
        .iter()
        .map(|l| {
            [
                l.protocol.clone(),
                l.state.clone(),
                l.recv_queue.to_string(),
                l.send_queue.to_string(),
                show_address(&l.local),
                show_address(&l.peer),
                l.owner.clone(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let push_row = |out: &mut String, cells: &[&str]| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    push_row(&mut out, &HEADER);
    for (row, line) in rows.iter().zip(lines) {
        push_row(&mut out, &row.each_ref().map(String::as_str));
        if !line.details.is_empty() {
            out.push_str("\t ");
            out.push_str(&line.details);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(protocol: &str, state: &str, queues: (usize, usize), ends: (&str, &str)) -> SocketLine {
        SocketLine {
            protocol: protocol.into(),
            state: state.into(),
            recv_queue: queues.0,
            send_queue: queues.1,
            local: ends.0.into(),
            peer: ends.1.into(),
            details: String::new(),
            owner: String::new(),
        }
    }

    #[test]
    fn columns_align_and_details_follow_their_socket() {
        let mut established = line("tcp", "ESTAB", (0, 1448), ("10.77.0.2:43210", "10.77.0.1:80"));
        established.details = "cubic wscale:7,7 rto:204 rtt:0.120/0.060 mss:1448 cwnd:10".into();
        established.owner = "curl (pid 4242)".into();
        let mut listener = line("tcp", "LISTEN", (0, 128), ("[::]:8080", "[::]:0"));
        listener.owner = "nginx (pid 17)".into();
        let udp = line("udp", "UNCONN", (512, 0), ("0.0.0.0:53", "0.0.0.0:0"));
        let text = format_sockets(&[established, listener, udp]);
        let want = "\
Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
tcp   ESTAB  0      1448   10.77.0.2:43210    10.77.0.1:80      curl (pid 4242)
\t cubic wscale:7,7 rto:204 rtt:0.120/0.060 mss:1448 cwnd:10
tcp   LISTEN 0      128    [::]:8080          [::]:*            nginx (pid 17)
udp   UNCONN 512    0      0.0.0.0:53         0.0.0.0:*
";
        assert_eq!(text, want);
    }

    #[test]
    fn long_cells_widen_their_column() {
        let wide = line("tcp", "SYN-SENT", (0, 0), ("[fd00:77::2]:50000", "[2001:db8::1234]:443"));
        let text = format_sockets(&[wide]);
        let want = "\
Netid State    Recv-Q Send-Q Local Address:Port Peer Address:Port    Process
tcp   SYN-SENT 0      0      [fd00:77::2]:50000 [2001:db8::1234]:443
";
        assert_eq!(text, want);
    }

    #[test]
    fn no_sockets_is_a_header_alone() {
        assert_eq!(
            format_sockets(&[]),
            "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        );
    }
}
