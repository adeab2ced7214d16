//! `tollgate email test --to ADDRESS`: one message through `SMTP_URL`, now, to check the
//! transport end to end (docs/email.md).

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::events::email::{Mailer, Outgoing, SendError, mask};

#[derive(Debug, Subcommand)]
pub enum EmailCommand {
    /// Send one test message now (not through the queue).
    Test {
        #[arg(long)]
        to: String,
    },
}

pub async fn run(config: Config, command: EmailCommand) -> anyhow::Result<()> {
    match command {
        EmailCommand::Test { to } => {
            let Some(mailer) = Mailer::from_config(&config).map_err(anyhow::Error::msg)? else {
                bail!("SMTP_URL is not set (email.smtp_url)");
            };
            let id = format!("<tollgate.test.{}@tollgate>", uuid::Uuid::now_v7().simple());
            let message = Outgoing {
                from: None,
                to: &to,
                subject: "tollgate test message",
                text: "This message was sent by `tollgate email test`: the SMTP transport works.",
                html: None,
                message_id: &id,
            };
            match mailer.send(&message).await {
                Ok(()) => println!("sent a test message to {}", mask(&to)),
                Err(SendError::Rejected { code, detail }) => {
                    bail!("the server refused the message ({code}): {detail}")
                }
                Err(e) => bail!("{e}"),
            }
        }
    }
    Ok(())
}
