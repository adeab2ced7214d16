//! Invite codes of an app, and redeeming one (atomically: a code with one use left is given to
//! exactly one user).

use serde::Serialize;

use crate::store::scope::{self, Scope};
use crate::store::{Db, now_ms};
use crate::{scoped_run, tx_run};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InviteRow {
    pub id: i64,
    pub code: String,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// Creates a code; `None` if the app already has it.
pub async fn create(
    db: &Db,
    app_id: i64,
    code: &str,
    max_uses: i64,
    expires_at: Option<i64>,
) -> Result<Option<InviteRow>, sqlx::Error> {
    let now = now_ms();
    let id: Option<i64> = scoped_run!(db, Scope::App(app_id), pool => sqlx::query_scalar(
        "INSERT INTO invite_codes (app_id, code, max_uses, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, code) DO NOTHING RETURNING id")
        .bind(app_id).bind(code).bind(max_uses).bind(expires_at).bind(now)
        .fetch_optional(pool).await)?;
    Ok(id.map(|id| InviteRow {
        id,
        code: code.to_string(),
        max_uses,
        uses: 0,
        expires_at,
        created_at: now,
    }))
}

pub async fn list(db: &Db, app_id: i64) -> Result<Vec<InviteRow>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, i64, Option<i64>, i64)> = scoped_run!(db, Scope::App(app_id), pool => sqlx::query_as(
        "SELECT id, code, max_uses, uses, expires_at, created_at FROM invite_codes \
         WHERE app_id = $1 ORDER BY id DESC")
        .bind(app_id).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, code, max_uses, uses, expires_at, created_at)| InviteRow {
                id,
                code,
                max_uses,
                uses,
                expires_at,
                created_at,
            },
        )
        .collect())
}

/// How a redemption went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    /// The code was used for this user.
    Now,
    /// The user had redeemed a code before; nothing was used.
    Already,
    /// No such code in this app, expired, or used up.
    Refused(&'static str),
}

pub async fn redeem(
    db: &Db,
    app_id: i64,
    user_id: i64,
    code: &str,
) -> Result<Redeemed, sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let invited: Option<i64> = tx_run!(&mut tx, c => sqlx::query_scalar(
        "SELECT invited_at FROM users WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(user_id).fetch_one(&mut **c).await)?;
    if invited.is_some() {
        return Ok(Redeemed::Already);
    }
    let used: Option<i64> = tx_run!(&mut tx, c => sqlx::query_scalar(
        "UPDATE invite_codes SET uses = uses + 1 WHERE app_id = $1 AND code = $2 \
         AND uses < max_uses AND (expires_at IS NULL OR expires_at > $3) RETURNING id")
        .bind(app_id).bind(code).bind(now).fetch_optional(&mut **c).await)?;
    let Some(code_id) = used else {
        let known: Option<(i64, i64, Option<i64>)> = tx_run!(&mut tx, c => sqlx::query_as(
            "SELECT uses, max_uses, expires_at FROM invite_codes WHERE app_id = $1 AND code = $2")
            .bind(app_id).bind(code).fetch_optional(&mut **c).await)?;
        return Ok(Redeemed::Refused(match known {
            None => "no such invite code",
            Some((_, _, Some(at))) if at <= now => "this invite code has expired",
            Some(_) => "this invite code has been used up",
        }));
    };
    tx_run!(&mut tx, c => sqlx::query(
        "UPDATE users SET invited_at = $1, invite_code_id = $2 WHERE app_id = $3 AND id = $4")
        .bind(now).bind(code_id).bind(app_id).bind(user_id)
        .execute(&mut **c).await.map(|_| ()))?;
    tx.commit().await?;
    Ok(Redeemed::Now)
}
