//! An SMTP server on a local port, speaking enough of RFC 5321 for a real client (lettre):
//! greeting, EHLO with AUTH PLAIN, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT. It
//! checks the credentials, records every message it accepts, and can refuse a recipient for
//! good (550) or answer DATA with a temporary failure (451) a number of times.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub const USER: &str = "mailer";
pub const PASSWORD: &str = "s3cret-pass";

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-stuffing undone).
    pub data: String,
}

#[derive(Clone, Default)]
pub struct FakeSmtp {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    mails: Vec<Mail>,
    refused: HashSet<String>,
    temporary_failures: usize,
}

impl FakeSmtp {
    /// Serves on a random port; returns the server and an SMTP_URL for it.
    pub async fn start() -> (FakeSmtp, String) {
        let smtp = FakeSmtp::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = smtp.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(s.clone().session(socket));
            }
        });
        (
            smtp,
            format!("smtp://{USER}:{PASSWORD}@127.0.0.1:{port}?tls=none"),
        )
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.inner.lock().unwrap().mails.clone()
    }

    /// RCPT TO this address gets a permanent 550.
    pub fn refuse(&self, address: &str) {
        self.inner
            .lock()
            .unwrap()
            .refused
            .insert(address.to_string());
    }

    /// The next `n` messages get a 451 after their data.
    pub fn fail_temporarily(&self, n: usize) {
        self.inner.lock().unwrap().temporary_failures = n;
    }

    async fn session(self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read);
        let say = async |w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| {
            let _ = w.write_all(format!("{text}\r\n").as_bytes()).await;
        };
        say(&mut write, "220 fake.smtp ESMTP ready").await;
        let (mut from, mut to, mut authed) = (String::new(), Vec::new(), false);
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_string();
            let upper = command.to_ascii_uppercase();
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                say(
                    &mut write,
                    "250-fake.smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME",
                )
                .await;
            } else if upper.starts_with("AUTH PLAIN") {
                let given = command.split(' ').nth(2).unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(given)
                    .unwrap_or_default();
                let expected = format!("\0{USER}\0{PASSWORD}");
                authed = decoded == expected.as_bytes();
                say(
                    &mut write,
                    if authed {
                        "235 2.7.0 accepted"
                    } else {
                        "535 5.7.8 bad credentials"
                    },
                )
                .await;
            } else if upper.starts_with("MAIL FROM:") {
                if !authed {
                    say(&mut write, "530 5.7.0 authentication required").await;
                    continue;
                }
                from = address(&command);
                to.clear();
                say(&mut write, "250 2.1.0 ok").await;
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = address(&command);
                if self.inner.lock().unwrap().refused.contains(&rcpt) {
                    say(&mut write, "550 5.1.1 no such user here").await;
                } else {
                    to.push(rcpt);
                    say(&mut write, "250 2.1.5 ok").await;
                }
            } else if upper == "DATA" {
                say(&mut write, "354 end with <CRLF>.<CRLF>").await;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let temporary = {
                    let mut inner = self.inner.lock().unwrap();
                    if inner.temporary_failures > 0 {
                        inner.temporary_failures -= 1;
                        true
                    } else {
                        inner.mails.push(Mail {
                            from: from.clone(),
                            to: to.clone(),
                            data,
                        });
                        false
                    }
                };
                say(
                    &mut write,
                    if temporary {
                        "451 4.3.0 try again later"
                    } else {
                        "250 2.0.0 queued"
                    },
                )
                .await;
            } else if upper == "RSET" || upper == "NOOP" {
                say(&mut write, "250 2.0.0 ok").await;
            } else if upper == "QUIT" {
                say(&mut write, "221 2.0.0 bye").await;
                return;
            } else {
                say(&mut write, "502 5.5.2 command not implemented").await;
            }
        }
    }
}

/// The address of `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}
