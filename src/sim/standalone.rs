//! `missions sim`: the simulator on a port, with the sample world, for trying
//! the App by hand (`missions serve` pointed at it) or poking it with curl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;

use super::{FaultConfig, Sim, SimConfig, sample};

#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    pub port: u16,
    pub data_dir: PathBuf,
    /// The App's private key (PEM): read if it exists, else made and written here.
    pub app_key: PathBuf,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
    /// `FILE=COMMAND`: what a dispatch of `.github/workflows/FILE` runs (with `sh -c`).
    pub workflow_commands: Vec<String>,
    pub faults: FaultConfig,
    pub job_timeout: Duration,
}

/// The public half of a PEM private key (PKCS#1 or PKCS#8), as PEM.
pub fn public_key_pem(private_pem: &str) -> anyhow::Result<String> {
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(private_pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(private_pem))
        .context("the App key is not an RSA private key in PEM (PKCS#1 or PKCS#8)")?;
    Ok(key.to_public_key().to_public_key_pem(LineEnding::LF)?)
}

fn load_or_make_key(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        return std::fs::read_to_string(path)
            .with_context(|| format!("reading the App key {}", path.display()));
    }
    let mut rng = rand::thread_rng();
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).context("generating an RSA key")?;
    let pem = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
    write_private(path, pem.as_bytes())?;
    Ok(pem)
}

/// Writes a file only its owner can read (keys and tokens).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Starts the simulator with the sample world and prints how to use it.
pub async fn start(options: StandaloneOptions) -> anyhow::Result<Sim> {
    let private_pem = load_or_make_key(&options.app_key)?;
    let public_pem = public_key_pem(&private_pem)?;
    let mut config = SimConfig::new(&options.data_dir);
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], options.port));
    config.faults = options.faults.clone();
    config.job_timeout = options.job_timeout;
    for spec in &options.workflow_commands {
        let (file, command) = spec
            .split_once('=')
            .with_context(|| format!("--workflow-command {spec:?} is not FILE=COMMAND"))?;
        config.workflow_commands.insert(
            file.to_owned(),
            vec!["sh".into(), "-c".into(), command.to_owned()],
        );
    }
    let sim = Sim::start(config, crate::clock::system()).await?;
    if let (Some(url), Some(secret)) = (&options.webhook_url, &options.webhook_secret) {
        sim.set_webhook_target(url, secret.clone());
    }
    let world = sample::seed(&sim, &public_pem).await?;
    let tokens = serde_json::json!({
        world.maintainer.login.clone(): world.maintainer.token,
        world.reader.login.clone(): world.reader.token,
    });
    let tokens_path = options.data_dir.join("tokens.json");
    write_private(
        &tokens_path,
        serde_json::to_string_pretty(&tokens)?.as_bytes(),
    )?;
    println!("GitHub simulator at {}", sim.url());
    println!(
        "  repository   {} (App {} installed, installation {})",
        world.repo, world.app_id, world.installation_id
    );
    println!("  clone        git clone {}/{}.git", sim.url(), world.repo);
    println!("  App key      {}", options.app_key.display());
    println!(
        "  user tokens  {} (alice: maintain, bob: read)",
        tokens_path.display()
    );
    match &options.webhook_url {
        Some(url) if options.webhook_secret.is_some() => println!("  webhooks  -> {url}"),
        Some(_) => println!("  webhooks     not sent: --webhook-url needs MISSIONS_WEBHOOK_SECRET"),
        None => println!(
            "  webhooks     not sent (no --webhook-url); see {}/_sim/deliveries",
            sim.url()
        ),
    }
    println!(
        "  App config   MISSIONS_GITHUB_API_URL={} MISSIONS_APP_ID={} MISSIONS_PRIVATE_KEY_PATH={}",
        sim.url(),
        world.app_id,
        options.app_key.display()
    );
    Ok(sim)
}
