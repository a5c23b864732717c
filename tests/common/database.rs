//! Which database a test binary runs on. Each test file that runs on both
//! engines is built twice (Cargo.toml names it twice): as `<name>`, on SQLite,
//! and as `<name>_postgres`, on PostgreSQL (a private server from Debian's
//! packages, or MISSIONS_TEST_POSTGRES_URL's).

use std::path::Path;

use missions::store::Engine;
use missions::store::postgres_server;

/// The engine this test binary runs on, from its name.
pub fn engine() -> Engine {
    if env!("CARGO_CRATE_NAME").ends_with("_postgres") {
        Engine::Postgres
    } else {
        Engine::Sqlite
    }
}

/// A fresh, empty database for one test: a file in `dir` on SQLite, a new
/// database on PostgreSQL. With MISSIONS_SKIP_POSTGRES=1 a PostgreSQL binary's
/// tests run on SQLite instead, and say so.
pub async fn fresh_url(dir: &Path) -> String {
    let sqlite = format!("sqlite://{}", dir.join("missions.db").display());
    match engine() {
        Engine::Sqlite => sqlite,
        Engine::Postgres => match postgres_server::test_database().await {
            Ok(Some(url)) => url,
            Ok(None) => {
                eprintln!("MISSIONS_SKIP_POSTGRES is set: running this PostgreSQL test on SQLite");
                sqlite
            }
            Err(e) => panic!("{e:#}"),
        },
    }
}
