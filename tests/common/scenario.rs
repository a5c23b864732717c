//! The scenario tester: the App (`Server` on a temporary database, over real
//! HTTP) and the GitHub simulator (with the sample world) in one process.
//! A test speaks as users through the simulator's REST API with their own
//! tokens, and asserts what a user would see there. Waiting is event-driven
//! (the simulator's change feed) with a deadline, never a bare sleep.
//!
//! Every scenario ends with the canary scan ([`super::canary`]): when the test
//! calls [`Scenario::stop`], or when it drops the scenario without panicking.
//! A secret found anywhere a leak could reach fails the test.

use std::sync::Arc;
use std::time::Duration;

use missions::clock::{self, SharedClock};
use missions::engine::HandlerRegistry;
use missions::engine::missions::DriverConfig;
use missions::github::auth::AppCredentials;
use missions::github::client::{ApiRetry, GitHubApp};
use missions::server::{MissionsOptions, Server, ServerOptions};
use missions::sim::sample::{self, SampleWorld};
use missions::sim::{DeliveryRecord, FaultConfig, RepoSpec, Sim, SimConfig};
use missions::store::Store;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::SECRET;
use super::canary::{self, Leak};

/// How long a scenario waits for one expected thing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// One RSA key per test binary: generating one takes a moment.
pub fn app_key() -> &'static (String, String) {
    static KEY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (private, public)
    })
}

pub struct ScenarioOptions {
    pub faults: FaultConfig,
    /// Workflow file → the argv its jobs run (`${{ inputs.X }}` substituted per argument).
    pub workflows: Vec<(String, Vec<String>)>,
    /// Workflow file → its jobs, run one after another (takes precedence over
    /// `workflows`): the mission workflow as the template splits it.
    pub workflow_jobs: Vec<(String, Vec<missions::sim::SimJob>)>,
    /// The repository's own CI: workflow file → its jobs, run independently
    /// on every push of a commit whose workflow file declares a push trigger
    /// (`SimConfig::push_workflows`).
    pub push_workflows: Vec<(String, Vec<missions::sim::SimJob>)>,
    /// The App's handlers, given the App's GitHub client.
    pub handlers: Box<dyn FnOnce(Arc<GitHubApp>) -> HandlerRegistry + Send>,
    /// Runs missions (the mission handler and driver) with this configuration.
    pub missions: Option<DriverConfig>,
    /// The sample world's one repository; `octo-org/demo` when `None`.
    pub repo: Option<RepoSpec>,
    /// Mission control's token and extra host names (`control_token`, `control_hosts`).
    pub control_token: Option<String>,
    pub control_hosts: Vec<String>,
    /// Where the App listens; `127.0.0.1:0` when `None`. Tests reach it on
    /// 127.0.0.1 at its port either way.
    pub listen: Option<String>,
    /// The runner's limit on one job (`timeout-minutes`); 60 s when `None`.
    pub job_timeout: Option<Duration>,
    /// The clock of the simulator and the App; the system's when `None`.
    pub clock: Option<SharedClock>,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        Self {
            faults: FaultConfig::default(),
            workflows: Vec::new(),
            workflow_jobs: Vec::new(),
            push_workflows: Vec::new(),
            handlers: Box::new(|_| HandlerRegistry::new()),
            missions: None,
            repo: None,
            control_token: None,
            control_hosts: Vec::new(),
            listen: None,
            job_timeout: None,
            clock: None,
        }
    }
}

pub struct Scenario {
    pub sim: Sim,
    pub world: SampleWorld,
    pub github: Arc<GitHubApp>,
    pub store: Store,
    pub http: reqwest::Client,
    pub app_url: String,
    /// The App's event loop: changes after each batch it commits.
    progress: tokio::sync::watch::Receiver<u64>,
    /// The mission driver: changes after each pass that did something.
    pub mission_progress: Option<tokio::sync::watch::Receiver<u64>>,
    stop: tokio_util::sync::CancellationToken,
    server_task: Option<tokio::task::JoinHandle<()>>,
    /// The canary scan this scenario ends with.
    scan: canary::Scan,
    /// Set once the scan ran.
    scanned: bool,
    _dir: tempfile::TempDir,
}

/// What a user sees of one REST answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Scenario {
    pub async fn start(options: ScenarioOptions) -> Scenario {
        canary::capture_logs();
        let log_from = canary::log_len();
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = options.clock.clone().unwrap_or_else(clock::system);
        let (private_pem, public_pem) = app_key();

        let mut config = SimConfig::new(dir.path().join("sim"));
        config.faults = options.faults;
        config.job_timeout = options.job_timeout.unwrap_or(Duration::from_secs(60));
        let harness_workflows = options
            .workflows
            .iter()
            .filter(|(_, argv)| canary::runs_missions(argv))
            .map(|(file, _)| file.clone())
            .chain(
                options
                    .workflow_jobs
                    .iter()
                    .filter(|(_, jobs)| jobs.iter().any(|j| canary::runs_missions(&j.command)))
                    .map(|(file, _)| file.clone()),
            )
            .collect();
        config.workflow_commands.extend(options.workflows);
        config.workflow_jobs.extend(options.workflow_jobs);
        config.push_workflows.extend(options.push_workflows);
        // Canary model keys, as a workflow maps its secrets into the job's
        // `env:`; and where the jobs' scripted models record their requests.
        config.job_secrets = canary::model_keys().to_vec();
        let requests_dir = dir.path().join("model-requests");
        config.job_env.push((
            canary::RECORD_DIR_VAR.to_owned(),
            requests_dir.display().to_string(),
        ));
        let sim = Sim::start(config, clock.clone()).await.unwrap();

        // The App: server on a temporary database, bound to a real port.
        let github = Arc::new(
            GitHubApp::new(
                sim.url(),
                AppCredentials::new(sample::APP_ID, SecretString::from(private_pem.clone())),
                clock.clone(),
            )
            .unwrap()
            // Honour the simulator's 1 s retry-after; back off briefly on 5xx.
            .with_api_retry(ApiRetry {
                max_attempts: 8,
                base_delay: Duration::from_millis(50),
                ..ApiRetry::default()
            }),
        );
        let db_url = super::database::fresh_url(dir.path()).await;
        let store = Store::open(&db_url).await.unwrap();
        let server = Server::start(
            store.clone(),
            ServerOptions {
                webhook_secrets: vec![SecretString::from(SECRET)],
                handlers: (options.handlers)(github.clone()),
                retry: super::fast_retry(),
                clock,
                run_event_loop: true,
                missions: options.missions.map(|driver| MissionsOptions {
                    app: github.clone(),
                    driver,
                    control_token: options.control_token.map(SecretString::from),
                    control_hosts: options.control_hosts,
                }),
            },
        )
        .await
        .unwrap();
        let progress = server.progress().expect("the event loop runs");
        let mission_progress = server.mission_progress();
        let listen = options.listen.as_deref().unwrap_or("127.0.0.1:0");
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let app_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let stop = tokio_util::sync::CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let server_task = tokio::spawn(async move {
            server.serve(listener, shutdown).await.unwrap();
        });
        sim.set_webhook_target(&format!("{app_url}/webhook"), SecretString::from(SECRET));

        let world = match options.repo {
            Some(spec) => sample::seed_with(&sim, public_pem, spec).await.unwrap(),
            None => sample::seed(&sim, public_pem).await.unwrap(),
        };
        missions::llm::http::install_crypto_provider();
        let scan = canary::Scan {
            sim: sim.clone(),
            db_url,
            requests_dir,
            log_from,
            harness_workflows,
            webhook_secret: SECRET.to_owned(),
            private_key_pem: private_pem.clone(),
        };
        Scenario {
            sim,
            world,
            github,
            store,
            http: reqwest::Client::new(),
            app_url,
            progress,
            mission_progress,
            stop,
            server_task: Some(server_task),
            scan,
            scanned: false,
            _dir: dir,
        }
    }

    /// Stops the App and the simulator, then fails the test if a secret
    /// canary is anywhere a leak could reach (see [`canary`]).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.server_task.take() {
            task.await.unwrap();
        }
        self.sim.shutdown();
        self.scan.settle().await;
        let leaks = self.leaks().await;
        self.scanned = true;
        assert!(leaks.is_empty(), "{}", canary::report(&leaks));
    }

    /// Every place a secret canary is found right now.
    pub async fn leaks(&self) -> Vec<Leak> {
        self.scan.leaks(Some(self.store.pool())).await
    }

    fn token_of(&self, login: &str) -> &str {
        match login {
            l if l == self.world.maintainer.login => &self.world.maintainer.token,
            l if l == self.world.reader.login => &self.world.reader.token,
            other => panic!("no sample user {other}"),
        }
    }

    /// A REST call as `login`, without retries: a user sees the raw answer.
    /// Every request the jobs' scripted models were sent so far, one JSON
    /// document a line.
    pub fn model_requests(&self) -> String {
        let Ok(entries) = std::fs::read_dir(&self.scan.requests_dir) else {
            return String::new();
        };
        let mut files: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }

    pub async fn call(&self, login: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.sim.url());
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, url)
            .header("authorization", format!("Bearer {}", self.token_of(login)))
            .header("accept", "application/vnd.github+json");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body }
    }

    /// As `call`, retrying what the fault injection answered (a person clicks again).
    pub async fn act(&self, login: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        for _ in 0..20 {
            let answer = self.call(login, method, path, body.clone()).await;
            let injected = answer.status >= 500
                || ((answer.status == 403 || answer.status == 429)
                    && answer.body["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("secondary rate limit")));
            if !injected {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{method} {path} kept failing");
    }

    fn repo_path(&self) -> String {
        format!("/repos/{}", self.world.repo)
    }

    /// `login` opens an issue; returns its number.
    pub async fn open_issue(&self, login: &str, title: &str, body: &str) -> u64 {
        let answer = self
            .act(
                login,
                "POST",
                &format!("{}/issues", self.repo_path()),
                Some(json!({"title": title, "body": body})),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        answer.body["number"].as_u64().unwrap()
    }

    /// `login` adds `label` to issue `number`; returns the status GitHub answered.
    pub async fn label_issue(&self, login: &str, number: u64, label: &str) -> u16 {
        self.act(
            login,
            "POST",
            &format!("{}/issues/{number}/labels", self.repo_path()),
            Some(json!({"labels": [label]})),
        )
        .await
        .status
    }

    pub async fn comments(&self, number: u64) -> Vec<Value> {
        let answer = self
            .act(
                &self.world.maintainer.login.clone(),
                "GET",
                &format!("{}/issues/{number}/comments?per_page=100", self.repo_path()),
                None,
            )
            .await;
        assert_eq!(answer.status, 200);
        answer.body.as_array().cloned().unwrap_or_default()
    }

    /// Waits for a comment on issue `number` by the App containing `text`.
    pub async fn expect_app_comment(&self, number: u64, text: &str) -> Value {
        let bot = format!("{}[bot]", sample::APP_SLUG);
        let sim = self.sim.clone();
        let repo = self.world.repo.clone();
        let text = text.to_owned();
        sim.wait_for(
            &format!("a comment by {bot} containing {text:?} on #{number}"),
            DEADLINE,
            |s| {
                s.read(|w| {
                    w.repos[&repo].comments.values().any(|c| {
                        c.issue_number == number && c.user == bot && c.body.contains(&text)
                    })
                })
                .then_some(())
            },
        )
        .await
        .unwrap();
        // And as a user sees it through the REST API.
        let comments = self.comments(number).await;
        comments
            .into_iter()
            .find(|c| c["user"]["login"] == bot && c["body"].as_str().unwrap_or("").contains(&text))
            .expect("the comment is listed by the REST API")
    }

    /// The sha of `branch` through `GET /repos/{o}/{r}/branches/{branch}`, waiting for it to exist.
    pub async fn expect_branch(&self, branch: &str) -> String {
        let sim = self.sim.clone();
        let repo = self.world.repo.clone();
        let refname = format!("refs/heads/{branch}");
        let mut rx = sim.subscribe();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            rx.borrow_and_update();
            if sim
                .git()
                .resolve_ref(&repo, &refname)
                .await
                .unwrap()
                .is_some()
            {
                break;
            }
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .unwrap_or_else(|_| panic!("branch {branch} was not created within {DEADLINE:?}"))
                .unwrap();
        }
        let answer = self
            .act(
                &self.world.maintainer.login.clone(),
                "GET",
                &format!("{}/branches/{branch}", self.repo_path()),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.body["commit"]["sha"].as_str().unwrap().to_owned()
    }

    /// A file's text on a ref through the contents API (None on 404).
    pub async fn file(&self, path: &str, reference: &str) -> Option<String> {
        use base64::Engine;
        let answer = self
            .act(
                &self.world.maintainer.login.clone(),
                "GET",
                &format!("{}/contents/{path}?ref={reference}", self.repo_path()),
                None,
            )
            .await;
        if answer.status == 404 {
            return None;
        }
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        if answer.body["encoding"] == "none" {
            // Over 1 MB: GitHub gives the text only in the raw media type.
            let url = format!(
                "{}{}/contents/{path}?ref={reference}",
                self.sim.url(),
                self.repo_path()
            );
            let raw = self
                .http
                .get(url)
                .header(
                    "authorization",
                    format!("Bearer {}", self.token_of(&self.world.maintainer.login)),
                )
                .header("accept", "application/vnd.github.raw+json")
                .send()
                .await
                .unwrap();
            assert_eq!(raw.status().as_u16(), 200);
            return Some(raw.text().await.unwrap());
        }
        assert_eq!(answer.body["encoding"], "base64");
        let b64: String = answer.body["content"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        Some(String::from_utf8(bytes).unwrap())
    }

    /// Waits until the simulator has delivered `event.action` to the App and the App
    /// answered 2xx; returns the delivery.
    pub async fn expect_delivered(
        &self,
        event: &str,
        action: Option<&str>,
        matching: impl Fn(&Value) -> bool,
    ) -> DeliveryRecord {
        let what = format!(
            "a {event}.{} delivery accepted by the App",
            action.unwrap_or("-")
        );
        self.sim
            .wait_for(&what, DEADLINE, |s| {
                s.deliveries().into_iter().find(|d| {
                    d.event == event
                        && d.action.as_deref() == action
                        && d.status.is_some_and(|s| (200..300).contains(&s))
                        && matching(&d.payload)
                })
            })
            .await
            .unwrap()
    }

    /// Waits until the App's inbox holds `delivery_id` as processed (woken by
    /// the App's event loop after each batch it commits).
    pub async fn expect_processed(&self, delivery_id: &str) {
        let mut progress = self.progress.clone();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            progress.borrow_and_update();
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM inbox WHERE delivery_id = $1")
                    .bind(delivery_id)
                    .fetch_optional(self.store.pool())
                    .await
                    .unwrap();
            if status.as_deref() == Some("processed") {
                return;
            }
            tokio::time::timeout_at(deadline, progress.changed())
                .await
                .unwrap_or_else(|_| {
                    panic!("delivery {delivery_id} not processed within {DEADLINE:?} (status {status:?})")
                })
                .unwrap();
        }
    }
}

/// A scenario the test dropped without `stop()` is scanned here, unless the
/// test is failing already.
impl Drop for Scenario {
    fn drop(&mut self) {
        if self.scanned || std::thread::panicking() {
            return;
        }
        self.scanned = true;
        self.stop.cancel();
        self.sim.shutdown();
        // On a thread of its own: this may be inside the test's runtime.
        let scan = self.scan.clone();
        let leaks = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(scan.leaks(None))
        })
        .join()
        .expect("the canary scan");
        assert!(leaks.is_empty(), "{}", canary::report(&leaks));
    }
}
