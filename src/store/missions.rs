//! Missions, the inputs waiting for them, and the outbox of their effects.

use sqlx::{AnyConnection, AnyPool, Row};

use crate::mission::{Effect, Mission};

/// A mission row.
#[derive(Debug, Clone)]
pub struct StoredMission {
    pub id: i64,
    pub installation_id: i64,
    pub mission: Mission,
}

fn decode_mission(row: &sqlx::any::AnyRow) -> anyhow::Result<StoredMission> {
    let state: String = row.try_get("state")?;
    Ok(StoredMission {
        id: row.try_get("id")?,
        installation_id: row.try_get("installation_id")?,
        mission: serde_json::from_str(&state)?,
    })
}

pub async fn find(
    conn: &mut AnyConnection,
    repo: &str,
    issue: u64,
) -> anyhow::Result<Option<StoredMission>> {
    let row = sqlx::query(
        "SELECT id, installation_id, state FROM missions WHERE repo = $1 AND issue = $2",
    )
    .bind(repo)
    .bind(issue as i64)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_mission).transpose()
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> anyhow::Result<StoredMission> {
    let row = sqlx::query("SELECT id, installation_id, state FROM missions WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await?;
    decode_mission(&row)
}

/// Every mission, for reconciliation and mission control.
pub async fn all(pool: &AnyPool) -> anyhow::Result<Vec<StoredMission>> {
    let rows = sqlx::query("SELECT id, installation_id, state FROM missions ORDER BY id")
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode_mission).collect()
}

pub async fn insert(
    conn: &mut AnyConnection,
    installation_id: i64,
    mission: &Mission,
    now_ms: i64,
) -> anyhow::Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO missions (repo, issue, installation_id, state, updated_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&mission.repo)
    .bind(mission.issue as i64)
    .bind(installation_id)
    .bind(serde_json::to_string(mission)?)
    .bind(now_ms)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

pub async fn save(
    conn: &mut AnyConnection,
    id: i64,
    mission: &Mission,
    now_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE missions SET state = $1, updated_at = $2 WHERE id = $3")
        .bind(serde_json::to_string(mission)?)
        .bind(now_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Where an outbox effect applies.
#[derive(Debug, Clone)]
pub struct EffectScope {
    pub mission_id: Option<i64>,
    pub installation_id: i64,
    pub repo: String,
    pub issue: u64,
}

pub async fn push_effects(
    conn: &mut AnyConnection,
    scope: &EffectScope,
    effects: &[Effect],
    now_ms: i64,
) -> anyhow::Result<()> {
    for effect in effects {
        sqlx::query(
            "INSERT INTO outbox (mission_id, installation_id, repo, issue, effect, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(scope.mission_id)
        .bind(scope.installation_id)
        .bind(&scope.repo)
        .bind(scope.issue as i64)
        .bind(serde_json::to_string(effect)?)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records that `login` was refused a start on `issue`; false when they already
/// were (then they get no second reply).
pub async fn first_label_refusal(
    conn: &mut AnyConnection,
    repo: &str,
    issue: u64,
    login: &str,
    now_ms: i64,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO label_refusals (repo, issue, login, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(repo)
    .bind(issue as i64)
    .bind(login.to_ascii_lowercase())
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Whether an update of the mission control comment is already waiting: it
/// renders the mission as it is when it runs, so one is enough.
pub async fn has_pending_sticky(conn: &mut AnyConnection, mission_id: i64) -> anyhow::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM outbox WHERE mission_id = $1 AND status = 'pending' \
         AND effect = '{\"effect\":\"update_sticky\"}' LIMIT 1",
    )
    .bind(mission_id)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// A recorded effect.
#[derive(Debug, Clone)]
pub struct PendingEffect {
    pub id: i64,
    pub scope: EffectScope,
    pub effect: Effect,
    pub attempts: i64,
    /// An earlier attempt began and its outcome was never recorded (the process
    /// died mid-way): GitHub may have done it already.
    pub interrupted: bool,
}

/// The next due effect of each mission (effects of one mission run in order; one
/// waiting for a retry holds back those after it).
pub async fn due_effects(pool: &AnyPool, now_ms: i64) -> anyhow::Result<Vec<PendingEffect>> {
    let rows = sqlx::query(
        "SELECT o.id, o.mission_id, o.installation_id, o.repo, o.issue, o.effect, o.attempts, o.next_attempt_at, o.started_at \
         FROM outbox o WHERE o.status = 'pending' AND o.id = ( \
            SELECT MIN(p.id) FROM outbox p WHERE p.status = 'pending' \
            AND p.repo = o.repo AND p.issue = o.issue) \
         ORDER BY o.id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let next: i64 = row.try_get("next_attempt_at")?;
        if next > now_ms {
            continue;
        }
        let effect: String = row.try_get("effect")?;
        out.push(PendingEffect {
            id: row.try_get("id")?,
            scope: EffectScope {
                mission_id: row.try_get("mission_id")?,
                installation_id: row.try_get("installation_id")?,
                repo: row.try_get("repo")?,
                issue: row.try_get::<i64, _>("issue")? as u64,
            },
            effect: serde_json::from_str(&effect)?,
            attempts: row.try_get("attempts")?,
            interrupted: row.try_get::<Option<i64>, _>("started_at")?.is_some(),
        });
    }
    Ok(out)
}

/// The earliest retry time after `now_ms` among pending effects, if any wait
/// (those due already are either done by the pass or held back behind one
/// that waits: waking for them would spin).
pub async fn next_effect_retry(pool: &AnyPool, now_ms: i64) -> anyhow::Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending' AND next_attempt_at > $1",
    )
    .bind(now_ms)
    .fetch_one(pool)
    .await?)
}

/// Records that an attempt at the effect begins; committed before any REST call,
/// so that a crash mid-way is known on restart.
pub async fn start_effect(conn: &mut AnyConnection, id: i64, now_ms: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET started_at = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn finish_effect(
    conn: &mut AnyConnection,
    id: i64,
    ok: bool,
    error: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET status = $1, last_error = $2, attempts = attempts + 1, done_at = $3, started_at = NULL WHERE id = $4")
        .bind(if ok { "done" } else { "failed" })
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn retry_effect_later(
    conn: &mut AnyConnection,
    id: i64,
    error: &str,
    at_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, started_at = NULL WHERE id = $3")
        .bind(error)
        .bind(at_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn push_input(
    conn: &mut AnyConnection,
    installation_id: i64,
    repo: &str,
    input_json: &str,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO mission_inputs (installation_id, repo, input) VALUES ($1, $2, $3)")
        .bind(installation_id)
        .bind(repo)
        .bind(input_json)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PendingInput {
    pub seq: i64,
    pub installation_id: i64,
    pub repo: String,
    pub input: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

/// Pending inputs in arrival order; the caller stops at the first not yet due,
/// so that one mission's inputs are never applied out of order.
pub async fn pending_inputs(pool: &AnyPool) -> anyhow::Result<Vec<PendingInput>> {
    let rows = sqlx::query(
        "SELECT seq, installation_id, repo, input, attempts, next_attempt_at FROM mission_inputs \
         WHERE status = 'pending' ORDER BY seq LIMIT 512",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingInput {
                seq: row.try_get("seq")?,
                installation_id: row.try_get("installation_id")?,
                repo: row.try_get("repo")?,
                input: row.try_get("input")?,
                attempts: row.try_get("attempts")?,
                next_attempt_at: row.try_get("next_attempt_at")?,
            })
        })
        .collect()
}

pub async fn finish_input(
    conn: &mut AnyConnection,
    seq: i64,
    ok: bool,
    error: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE mission_inputs SET status = $1, last_error = $2, attempts = attempts + 1 WHERE seq = $3")
        .bind(if ok { "done" } else { "failed" })
        .bind(error)
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts an input aside until `at_ms` without counting a try (GitHub's rate
/// limit was spent: nothing was wrong with the input).
pub async fn defer_input(
    conn: &mut AnyConnection,
    seq: i64,
    note: &str,
    at_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE mission_inputs SET last_error = $1, next_attempt_at = $2 WHERE seq = $3")
        .bind(note)
        .bind(at_ms)
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// The earliest retry time after `now_ms` among pending inputs, if any wait.
pub async fn next_input_retry(pool: &AnyPool, now_ms: i64) -> anyhow::Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM mission_inputs WHERE status = 'pending' AND next_attempt_at > $1",
    )
    .bind(now_ms)
    .fetch_one(pool)
    .await?)
}

pub async fn retry_input_later(
    conn: &mut AnyConnection,
    seq: i64,
    error: &str,
    at_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE mission_inputs SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE seq = $3")
        .bind(error)
        .bind(at_ms)
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many effects wait to be performed, and when the oldest was recorded
/// (unix milliseconds).
pub async fn outbox_depth(pool: &AnyPool) -> anyhow::Result<(u64, Option<i64>)> {
    let (count, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'")
            .fetch_one(pool)
            .await?;
    Ok((count as u64, oldest))
}

/// How many facts from webhooks wait for the mission driver.
pub async fn inputs_depth(pool: &AnyPool) -> anyhow::Result<u64> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mission_inputs WHERE status = 'pending'")
            .fetch_one(pool)
            .await?;
    Ok(count as u64)
}
