//! The sample world `missions sim` starts with, and scenario tests build on:
//! an organization with one repository that has the App installed, a
//! maintainer and a reader, and a dispatchable workflow.

use super::state::{AccountKind, Permission};
use super::{RepoSpec, Sim};

pub const ORG: &str = "octo-org";
pub const REPO: &str = "octo-org/demo";
pub const APP_ID: u64 = 1;
pub const APP_SLUG: &str = "missions";
pub const WORKFLOW_FILE: &str = "missions.yml";

/// The workflow a repository adds: the template `missions init` writes
/// (`templates/missions.yml`). The simulator runs its configured command
/// instead of interpreting the YAML; it only checks for `workflow_dispatch`.
pub const WORKFLOW_YAML: &str = include_str!("../../templates/missions.yml");

#[derive(Debug, Clone)]
pub struct SampleUser {
    pub login: String,
    /// A personal access token for the simulator's REST API and git.
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct SampleWorld {
    pub repo: String,
    pub installation_id: u64,
    pub app_id: u64,
    /// `alice`, a maintainer of the repository.
    pub maintainer: SampleUser,
    /// `bob`, who can read but not write.
    pub reader: SampleUser,
}

/// Registers the App (checking JWTs with `app_public_key_pem`), creates the
/// sample repository and installs the App on it.
pub async fn seed(sim: &Sim, app_public_key_pem: &str) -> anyhow::Result<SampleWorld> {
    let spec = RepoSpec::new(REPO)
        .file(
            ".github/workflows/missions.yml",
            WORKFLOW_YAML.as_bytes().to_vec(),
        )
        .file(
            "src/lib.rs",
            b"pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n".to_vec(),
        );
    seed_with(sim, app_public_key_pem, spec).await
}

/// As [`seed`], with `spec` as the one repository (the demo's sample project).
pub async fn seed_with(
    sim: &Sim,
    app_public_key_pem: &str,
    spec: RepoSpec,
) -> anyhow::Result<SampleWorld> {
    sim.add_org(ORG);
    sim.register_app(APP_ID, APP_SLUG, ORG, app_public_key_pem);
    let maintainer = SampleUser {
        login: "alice".into(),
        token: sim.add_user("alice"),
    };
    let reader = SampleUser {
        login: "bob".into(),
        token: sim.add_user("bob"),
    };
    let repo = format!("{}/{}", spec.owner, spec.name);
    sim.create_repo(spec).await?;
    sim.set_permission(&repo, &maintainer.login, Permission::Maintain);
    sim.set_permission(&repo, &reader.login, Permission::Read);
    let installation_id = sim.install_app(ORG, &[&repo]);
    Ok(SampleWorld {
        repo,
        installation_id,
        app_id: APP_ID,
        maintainer,
        reader,
    })
}

/// A bot account (`login` should end in `[bot]`, as another App's or a CI
/// service's does) with a token for the REST API and `permission` on `repo`:
/// its acts reach webhooks with `"type": "Bot"`.
pub fn add_bot(sim: &Sim, repo: &str, login: &str, permission: Permission) -> String {
    sim.world().ensure_account(login, AccountKind::Bot);
    // The account exists now, so it stays a bot.
    let token = sim.add_user(login);
    sim.set_permission(repo, login, permission);
    token
}
