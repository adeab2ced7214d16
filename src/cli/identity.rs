//! `tollgate apps|keys|operators|users …`: tenants, keys and users from the command line
//! (docs/auth.md). A command that creates a key prints the secret alone on the last line of
//! stdout, so scripts can take `| tail -n1`. Every change is written to the audit log as `cli`.

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::domain::identity::{
    AppSlug, ExternalId, KeyKind, PresentedKey, Role, hash_secret, mask,
};
use crate::store::Db;
use crate::store::identity::{self, KeySpec, NewAudit};

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app (tenant).
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List apps.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a user key (--user) or an app secret key (--secret); prints the key last.
    Create {
        #[arg(long)]
        app: String,
        /// The user's external id: creates a user key (license token) for them.
        #[arg(long, conflicts_with = "secret", required_unless_present = "secret")]
        user: Option<String>,
        /// Create an app secret key (for the app's own server).
        #[arg(long)]
        secret: bool,
        #[arg(long)]
        name: Option<String>,
        /// Expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List an app's keys (masked).
    List {
        #[arg(long)]
        app: String,
    },
    /// Revoke a key, named by its id, its visible prefix, or the full key.
    Revoke { key: String },
}

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Create an operator token; prints the token last.
    CreateToken {
        #[arg(long)]
        role: Role,
        /// Limit the token to these apps (comma-separated slugs).
        #[arg(long, value_delimiter = ',')]
        apps: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Show a user.
    Show {
        #[arg(long)]
        app: String,
        #[arg(long)]
        user: String,
    },
    /// Delete a user's personal data (privacy request); their keys are revoked.
    Delete {
        #[arg(long)]
        app: String,
        #[arg(long)]
        user: String,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Owner, Role::Admin, Role::Support, Role::Viewer]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

async fn audit(db: &Db, action: &str, target: &str, app_id: Option<i64>) -> anyhow::Result<()> {
    identity::record_audit(
        db,
        &NewAudit {
            actor: "cli",
            actor_role: None,
            action,
            target: Some(target),
            app_id,
            request_id: None,
            details: None,
        },
    )
    .await?;
    Ok(())
}

pub(super) async fn app(db: &Db, slug: &str) -> anyhow::Result<identity::AppRow> {
    identity::app_by_slug(db, slug)
        .await?
        .with_context(|| format!("no app {slug:?} (create it with `tollgate apps create {slug}`)"))
}

pub async fn apps(
    db: &Db,
    config: &crate::config::Config,
    command: AppsCommand,
) -> anyhow::Result<()> {
    match command {
        AppsCommand::Create { slug, name } => {
            let slug = AppSlug::parse(&slug).map_err(anyhow::Error::msg)?;
            let name = name.unwrap_or_else(|| slug.to_string());
            let Some(app) =
                identity::create_app_with(db, slug.as_str(), &name, &config.new_app_settings())
                    .await?
            else {
                bail!("an app {slug} already exists");
            };
            audit(db, "apps.create", slug.as_str(), Some(app.id)).await?;
            println!("created app {} ({})", app.slug, app.name);
        }
        AppsCommand::List => {
            for a in identity::list_apps(db).await? {
                println!("{}\t{}", a.slug, a.name);
            }
        }
    }
    Ok(())
}

pub async fn keys(db: &Db, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            app: slug,
            user,
            secret: _,
            name,
            expires_in_days,
        } => {
            let app = app(db, &slug).await?;
            let mut spec = KeySpec {
                app_id: Some(app.id),
                name,
                expires_at: expires_in_days
                    .map(|d| crate::store::now_ms() + i64::from(d) * 86_400_000),
                ..Default::default()
            };
            let kind = match user {
                Some(raw) => {
                    let id = ExternalId::parse(&raw).map_err(anyhow::Error::msg)?;
                    let (u, created) =
                        identity::find_or_create_user(db, app.id, id.as_str()).await?;
                    if created {
                        println!("created user {raw} in {slug}");
                    }
                    spec.user_id = Some(u.id);
                    KeyKind::User
                }
                None => KeyKind::App,
            };
            let (id, key) = identity::create_key(db, kind, &spec).await?;
            let masked = mask(&key.prefix, &key.last4);
            audit(db, "keys.create", &masked, Some(app.id)).await?;
            println!(
                "created {} key {id} ({masked}); it is shown once, store it now:",
                kind.as_str()
            );
            println!("{}", key.secret);
        }
        KeysCommand::List { app: slug } => {
            let app = app(db, &slug).await?;
            println!(
                "{:>8} {:<9} {:<34} {:<24} {:<10}",
                "ID", "KIND", "KEY", "USER", "STATUS"
            );
            for k in identity::list_keys(db, app.id).await? {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|at| at <= crate::store::now_ms()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:>8} {:<9} {:<34} {:<24} {:<10}",
                    k.id,
                    k.kind,
                    k.masked,
                    k.user_external_id.as_deref().unwrap_or("-"),
                    status
                );
            }
        }
        KeysCommand::Revoke { key } => {
            let found = if let Ok(id) = key.parse::<i64>() {
                identity::find_key(db, Some(id), None, None).await?
            } else if PresentedKey::parse(&key).is_some() {
                identity::find_key(db, None, None, Some(&hash_secret(&key))).await?
            } else {
                identity::find_key(db, None, Some(key.trim_end_matches('…')), None).await?
            };
            let Some(found) = found else {
                bail!("no key matches {:?}", crate::http::auth::masked(&key));
            };
            let changed = identity::revoke_key(db, found.id).await?;
            audit(db, "keys.revoke", &found.prefix, found.app_id).await?;
            if changed {
                println!(
                    "revoked key {} ({}…); servers refuse it within {} s",
                    found.id,
                    found.prefix,
                    crate::http::auth::CACHE_TTL.as_secs() + 1
                );
            } else {
                println!("key {} ({}…) was already revoked", found.id, found.prefix);
            }
        }
    }
    Ok(())
}

pub async fn operators(db: &Db, command: OperatorsCommand) -> anyhow::Result<()> {
    let OperatorsCommand::CreateToken { role, apps, name } = command;
    for slug in &apps {
        app(db, slug).await?;
    }
    let spec = KeySpec {
        role: Some(role),
        app_scope: (!apps.is_empty()).then_some(apps),
        name,
        ..Default::default()
    };
    let (id, key) = identity::create_key(db, KeyKind::Operator, &spec).await?;
    let masked = mask(&key.prefix, &key.last4);
    audit(db, "operators.create_token", &masked, None).await?;
    println!(
        "created {} operator token {id} ({masked}); it is shown once, store it now:",
        role.as_str()
    );
    println!("{}", key.secret);
    Ok(())
}

pub async fn users(db: &Db, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Show { app: slug, user } => {
            let app = app(db, &slug).await?;
            let Some(u) = identity::user_by_external_id(db, app.id, &user).await? else {
                bail!("no user {user:?} in {slug}");
            };
            println!("{}", serde_json::to_string_pretty(&u)?);
        }
        UsersCommand::Delete { app: slug, user } => {
            let app = app(db, &slug).await?;
            let Some(u) = identity::user_by_external_id(db, app.id, &user).await? else {
                bail!("no user {user:?} in {slug}");
            };
            identity::delete_user(db, app.id, u.id).await?;
            audit(db, "users.delete", &u.anonymous_id, Some(app.id)).await?;
            println!(
                "deleted user {user} of {slug}: external id erased, keys revoked; ledger entries stay under {}",
                u.anonymous_id
            );
        }
    }
    Ok(())
}

/// `tollgate import --app SLUG FILE`.
pub async fn import(db: &Db, slug: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use crate::ops::import::{self, Format};
    use sha2::Digest;
    let format = Format::of(path)
        .ok_or_else(|| anyhow::anyhow!("{}: expected a .csv or .json file", path.display()))?;
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let app = app(db, slug).await?;
    let rows = match import::parse(&bytes, format, &app.settings.billing) {
        Ok(rows) => rows,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", path.display());
            }
            anyhow::bail!("{} problem(s); nothing was imported", problems.len());
        }
    };
    let file_key = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
    let done = import::apply(db, &app, &rows, &file_key).await?;
    println!(
        "imported {} users into {slug} ({} new), {} plans set, {} balances granted ({} granted by this file before)",
        done.users, done.created, done.plans_set, done.granted, done.already
    );
    Ok(())
}

pub async fn seed_demo(db: &Db, config: &crate::config::Config) -> anyhow::Result<()> {
    let seeded = crate::ops::seed::demo(db, config).await?;
    let cases: Vec<String> = seeded
        .cases
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let what = format!(
        "{} users, {} store deliveries applied, {} AI calls, recovery cases: {}",
        seeded.users,
        seeded.deliveries,
        seeded.calls,
        cases.join(", ")
    );
    if seeded.created {
        println!("seeded app {}: {what}", seeded.app);
    } else {
        println!(
            "app {} was seeded before; nothing added ({what})",
            seeded.app
        );
    }
    if seeded.created {
        audit(db, "apps.seed_demo", &seeded.app, Some(seeded.app_id)).await?;
        let user = crate::ops::seed::first_user();
        println!(
            "try it: KEY=$(tollgate keys create --app {} --user {user} | tail -n1), then \
             curl -H \"Authorization: Bearer $KEY\" localhost:8080/v1/me",
            seeded.app
        );
    }
    Ok(())
}
