//! Per-role model configuration from `.github/missions.yml`: precedence (role
//! over `default:` over the server's defaults), key spellings, errors that
//! name the key, its path and line, prices, API keys read from the
//! environment without ever showing them, and providers built from a config.

use std::collections::HashMap;

use missions::llm::config::{
    ConfigError, DEFAULT_MAX_TOKENS, Engine, ModelConfig, ModelFamily, ModelsConfig, ProviderKind,
    Role, build_provider, parse_repo_config,
};
use missions::llm::pricing::{Prices, default_prices};
use missions::llm::{ChatRequest, Message};

const EXAMPLE: &str = r#"
label: missions
budget:
  max_usd: 20
models:
  default:            # applies to every role unless overridden
    provider: anthropic
    model: claude-sonnet-4-5
    max_tokens: 8192
  orchestrator:
    model: claude-opus-4-1
  scrutiny:
    provider: openai
    model: gpt-4.1
    base_url: https://openrouter.ai/api/v1
    api_key_env: OPENROUTER_API_KEY
    prices: { input: 2.0, output: 8.0, cache_read: 0.5, cache_write: 0 }
validators: [lint, test]
"#;

fn server_defaults() -> ModelConfig {
    ModelConfig {
        max_tokens: 4096,
        ..ModelConfig::new(ProviderKind::Anthropic, "claude-haiku-4-5")
    }
}

fn resolve(yaml: &str, role: Role) -> Result<ModelConfig, ConfigError> {
    parse_repo_config(yaml)?.resolve(role, &server_defaults())
}

fn parse_err(yaml: &str) -> String {
    parse_repo_config(yaml).unwrap_err().to_string()
}

fn resolve_err(yaml: &str, role: Role) -> String {
    resolve(yaml, role).unwrap_err().to_string()
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn role_section_overrides_default_which_overrides_the_server() {
    let models = parse_repo_config(EXAMPLE).unwrap();

    let orchestrator = models
        .resolve(Role::Orchestrator, &server_defaults())
        .unwrap();
    assert_eq!(orchestrator.provider, ProviderKind::Anthropic);
    assert_eq!(orchestrator.model, "claude-opus-4-1", "role over default");
    assert_eq!(orchestrator.max_tokens, 8192, "default over server");
    assert_eq!(orchestrator.key_env(), "ANTHROPIC_API_KEY");
    assert_eq!(
        orchestrator.prices(),
        default_prices("claude-opus-4-1").unwrap()
    );

    let worker = models.resolve(Role::Worker, &server_defaults()).unwrap();
    assert_eq!(worker.model, "claude-sonnet-4-5", "no section: default");
    assert_eq!(worker.max_tokens, 8192);

    let scrutiny = models.resolve(Role::Scrutiny, &server_defaults()).unwrap();
    assert_eq!(
        scrutiny,
        ModelConfig {
            provider: ProviderKind::OpenAi,
            model: "gpt-4.1".into(),
            max_tokens: 8192,
            base_url: Some("https://openrouter.ai/api/v1".into()),
            api_key_env: Some("OPENROUTER_API_KEY".into()),
            prices: Some(Prices {
                input: 2.0,
                output: 8.0,
                cache_read: 0.5,
                cache_write: 0.0
            }),
            script: None,
            context_window: None,
            engine: Engine::Builtin,
        }
    );
    assert_eq!(scrutiny.key_env(), "OPENROUTER_API_KEY");

    // Without the file's sections, the server's defaults.
    for yaml in [
        "",
        "label: x\n",
        "models:\n",
        "models: {}\n",
        "# only a comment\n",
    ] {
        let cfg = resolve(yaml, Role::UserTesting).unwrap();
        assert_eq!(cfg, server_defaults(), "{yaml:?}");
    }
}

#[test]
fn fields_merge_one_by_one() {
    let yaml =
        "models:\n  default:\n    max_tokens: 2000\n  worker:\n    model: claude-sonnet-4-5\n";
    let worker = resolve(yaml, Role::Worker).unwrap();
    assert_eq!(
        (worker.provider, worker.model.as_str(), worker.max_tokens),
        (ProviderKind::Anthropic, "claude-sonnet-4-5", 2000)
    );
    let scrutiny = resolve(yaml, Role::Scrutiny).unwrap();
    assert_eq!(
        (scrutiny.model.as_str(), scrutiny.max_tokens),
        ("claude-haiku-4-5", 2000)
    );
    assert_eq!(ModelConfig::default().max_tokens, DEFAULT_MAX_TOKENS);
}

#[test]
fn provider_and_model_bound_settings_are_not_inherited_across_a_change() {
    let yaml = r#"
models:
  default:
    provider: openai
    model: llama3
    base_url: http://localhost:11434/v1
    prices: { input: 0, output: 0, cache_read: 0, cache_write: 0 }
  worker:
    model: qwen3
  scrutiny:
    provider: anthropic
    model: claude-sonnet-4-5
  user-testing:
    max_tokens: 1000
"#;
    // Same provider: the base URL stays; a different model: the prices do not.
    let err = resolve_err(yaml, Role::Worker);
    assert!(err.contains("models.worker"), "{err}");
    assert!(err.contains("qwen3") && err.contains("prices:"), "{err}");
    // A different provider: the local base URL does not follow.
    let scrutiny = resolve(yaml, Role::Scrutiny).unwrap();
    assert_eq!(scrutiny.base_url, None);
    assert_eq!(scrutiny.prices, None);
    // Same provider and model: both stay.
    let user_testing = resolve(yaml, Role::UserTesting).unwrap();
    assert_eq!(
        user_testing.base_url.as_deref(),
        Some("http://localhost:11434/v1")
    );
    assert_eq!(user_testing.prices().input, 0.0);
    assert_eq!(user_testing.max_tokens, 1000);
}

#[test]
fn user_testing_is_spelt_with_a_hyphen_or_an_underscore() {
    for key in ["user-testing", "user_testing"] {
        let yaml = format!("models:\n  {key}:\n    model: claude-opus-4-1\n");
        let cfg = resolve(&yaml, Role::UserTesting).unwrap();
        assert_eq!(cfg.model, "claude-opus-4-1", "{key}");
        assert_eq!(
            resolve(&yaml, Role::Worker).unwrap().model,
            "claude-haiku-4-5"
        );
    }
    let err = parse_err("models:\n  user-testing: {}\n  user_testing: {}\n");
    assert!(err.contains("duplicate"), "{err}");
    assert_eq!("user-testing".parse::<Role>(), Ok(Role::UserTesting));
    assert_eq!(Role::UserTesting.to_string(), "user-testing");
}

#[test]
fn unknown_keys_are_named_with_their_path_and_line() {
    let err = parse_err(
        EXAMPLE
            .replace("    api_key_env:", "    modle: x\n    api_key_env:")
            .as_str(),
    );
    assert!(
        err.contains("models.scrutiny.modle: unknown field; expected one of provider, model"),
        "{err}"
    );
    assert!(err.contains(".github/missions.yml line 16"), "{err}");

    let err = parse_err("models:\n  reviewer:\n    model: x\n");
    assert!(err.contains("models.reviewer: unknown field"), "{err}");
    assert!(
        err.contains("orchestrator") && err.contains("user-testing"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");

    let err = parse_err(
        "models:\n  default:\n    prices: { input: 1, output: 2, cache_read: 0, cache_writ: 0 }\n",
    );
    assert!(
        err.contains("models.default.prices.cache_writ: unknown field"),
        "{err}"
    );
    assert!(err.contains("line 3"), "{err}");

    match parse_repo_config("models:\n  worker:\n    temprature: 0\n").unwrap_err() {
        ConfigError::Parse { key, line, .. } => {
            assert_eq!(key, "models.worker.temprature");
            assert_eq!(line, Some(3));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_top_level_keys_are_left_alone() {
    let yaml = "app: { anything: [1, 2] }\nlabel: m\nbudget: 5\nmodels:\n  worker:\n    max_tokens: 100\nsomething_new: true\n";
    assert_eq!(resolve(yaml, Role::Worker).unwrap().max_tokens, 100);
}

#[test]
fn invalid_values_are_refused_with_what_to_write_instead() {
    let cases: &[(&str, &[&str])] = &[
        (
            "models:\n  scrutiny:\n    provider: gemini\n",
            &[
                "models.scrutiny.provider",
                "\"gemini\"",
                "anthropic, openai",
                "line 3",
            ],
        ),
        (
            "models:\n  default:\n    max_tokens: 0\n",
            &["models.default.max_tokens", "1 to 128000", "line 3"],
        ),
        (
            "models:\n  default:\n    max_tokens: 200000\n",
            &["models.default.max_tokens", "200000 is out of range"],
        ),
        (
            "models:\n  default:\n    max_tokens: -5\n",
            &["models.default.max_tokens", "out of range"],
        ),
        (
            "models:\n  worker:\n    base_url: ftp://example.com\n",
            &["models.worker.base_url", "http(s)"],
        ),
        (
            "models:\n  worker:\n    base_url: openrouter.ai/api/v1\n",
            &["models.worker.base_url", "http(s)"],
        ),
        (
            "models:\n  worker:\n    model: \"\"\n",
            &["models.worker.model", "empty"],
        ),
        (
            "models:\n  worker:\n    prices: { input: -1, output: 2, cache_read: 0, cache_write: 0 }\n",
            &["models.worker.prices", "input"],
        ),
        (
            "models:\n  worker:\n    prices: { input: 1 }\n",
            &["models.worker.prices", "missing field"],
        ),
        (
            "models:\n  worker:\n    provider: openai\n    script: demo.json\n",
            &["models.worker.script", "only for `provider: scripted`"],
        ),
        (
            "models:\n  worker:\n    provider: scripted\n    base_url: http://x\n    script: s.json\n",
            &["models.worker.base_url", "remove"],
        ),
        ("models: [1, 2]\n", &["models", "line 1"]),
        (
            "models:\n  default: 3\n",
            &["models.default", "mapping of model settings"],
        ),
        (
            "models:\n  default:\n    prices: 3\n",
            &["models.default.prices", "input, output"],
        ),
        ("models:\n  default:\n  provider: x\n - y\n", &["line"]),
        ("models: [\n", &["line"]),
        ("- a\n- b\n", &["top-level"]),
    ];
    for (yaml, needles) in cases {
        let err = parse_err(yaml);
        for needle in *needles {
            assert!(err.contains(needle), "{yaml:?}: {err:?} lacks {needle:?}");
        }
        assert!(err.starts_with(".github/missions.yml"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn inherited_combinations_are_checked_when_resolved() {
    // `script` set under `default:` for the default (anthropic) provider, but
    // a role switches to scripted and back: only the resolved role fails.
    let yaml = "models:\n  default:\n    script: demo.json\n";
    let err = resolve_err(yaml, Role::Worker);
    assert!(err.contains("models.default.script"), "{err}");
    assert!(err.contains("remove"), "{err}");

    let err = resolve_err("models:\n  worker:\n    provider: scripted\n", Role::Worker);
    assert!(err.contains("script:"), "{err}");
    assert!(
        resolve(
            "models:\n  worker:\n    provider: scripted\n",
            Role::Scrutiny
        )
        .is_ok()
    );
}

#[test]
fn an_unknown_model_needs_prices() {
    let yaml = "models:\n  default:\n    provider: openai\n    model: my-finetune\n";
    let err = resolve(yaml, Role::Worker).unwrap_err();
    assert!(matches!(err, ConfigError::MissingPrices { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("models.default"), "{err}");
    assert!(err.contains("my-finetune"), "{err}");
    assert!(err.contains("prices:"), "{err}");
    assert!(err.contains("budgets"), "{err}");

    // With prices it resolves, and they are the ones used.
    let priced = format!(
        "{yaml}    prices: {{ input: 1.5, output: 6, cache_read: 0.15, cache_write: 0 }}\n"
    );
    let cfg = resolve(&priced, Role::Worker).unwrap();
    assert_eq!(cfg.prices().output, 6.0);

    // An unpriced model in the server's defaults is reported as theirs.
    let unpriced = ModelConfig::new(ProviderKind::OpenAi, "local-model");
    let err = ModelsConfig::default()
        .resolve(Role::Worker, &unpriced)
        .unwrap_err()
        .to_string();
    assert!(err.contains("server"), "{err}");
    assert!(!err.starts_with(".github"), "{err}");
}

#[test]
fn known_models_use_built_in_prices() {
    for (provider, model) in [
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("anthropic", "claude-opus-4-1"),
        ("openai", "gpt-4.1-mini"),
        ("openai", "o3"),
    ] {
        let yaml = format!("models:\n  worker:\n    provider: {provider}\n    model: {model}\n");
        let cfg = resolve(&yaml, Role::Worker).unwrap();
        assert_eq!(cfg.prices, None);
        assert_eq!(cfg.prices(), default_prices(model).unwrap(), "{model}");
    }
    // Explicit prices win over built-in ones.
    let yaml = "models:\n  worker:\n    model: claude-opus-4-1\n    prices: { input: 1, output: 1, cache_read: 1, cache_write: 1 }\n";
    assert_eq!(resolve(yaml, Role::Worker).unwrap().prices().output, 1.0);
}

#[test]
fn scripted_models_cost_their_built_in_price_or_nothing() {
    let yaml = "models:\n  worker:\n    provider: scripted\n    model: demo-model\n    script: demo.json\n  scrutiny:\n    provider: scripted\n    script: demo.json\n";
    let worker = resolve(yaml, Role::Worker).unwrap();
    assert_eq!(worker.prices().input, 0.0);
    assert_eq!(worker.key_env(), "");
    let scrutiny = resolve(yaml, Role::Scrutiny).unwrap();
    assert_eq!(
        scrutiny.prices(),
        default_prices("claude-haiku-4-5").unwrap(),
        "the server default's model, priced"
    );
}

#[test]
fn a_missing_api_key_names_the_variable_and_shows_no_secret() {
    let models = parse_repo_config(EXAMPLE).unwrap();
    let scrutiny = models.resolve(Role::Scrutiny, &server_defaults()).unwrap();
    let secret = "sk-canary-0123456789";
    // The key is under the usual name, but the config says OPENROUTER_API_KEY.
    let err = build_provider(&scrutiny, &env(&[("OPENAI_API_KEY", secret)]))
        .err()
        .expect("missing key");
    assert!(matches!(err, ConfigError::MissingKey { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("OPENROUTER_API_KEY"), "{text}");
    assert!(text.contains("repository secret"), "{text}");
    assert!(text.contains("env"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{err:?}").contains(secret));

    let worker = models.resolve(Role::Worker, &server_defaults()).unwrap();
    let err = build_provider(&worker, &env(&[("ANTHROPIC_API_KEY", "  ")]))
        .err()
        .expect("an empty key is missing");
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");

    let provider = build_provider(&worker, &env(&[("ANTHROPIC_API_KEY", secret)])).unwrap();
    assert_eq!(provider.name(), "anthropic");
    let provider = build_provider(&scrutiny, &env(&[("OPENROUTER_API_KEY", secret)])).unwrap();
    assert_eq!(provider.name(), "openai");

    // OpenAI at its own endpoint needs its key too.
    let openai = ModelConfig::new(ProviderKind::OpenAi, "gpt-4.1");
    let err = build_provider(&openai, &env(&[]))
        .err()
        .expect("missing key");
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
}

#[test]
fn a_key_pasted_as_the_variable_name_is_not_echoed() {
    let secret = "sk-ant-api03-canary";
    let yaml = format!("models:\n  worker:\n    api_key_env: {secret}\n");
    let err = parse_err(&yaml);
    assert!(err.contains("models.worker.api_key_env"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains(secret), "{err}");
}

#[test]
fn a_local_openai_compatible_server_needs_no_key() {
    let yaml = "models:\n  worker:\n    provider: openai\n    model: llama3\n    base_url: http://localhost:11434/v1\n    prices: { input: 0, output: 0, cache_read: 0, cache_write: 0 }\n";
    let cfg = resolve(yaml, Role::Worker).unwrap();
    let provider = build_provider(&cfg, &env(&[])).unwrap();
    assert_eq!(provider.name(), "openai");

    // Naming a variable explicitly says a key is needed.
    let named = ModelConfig {
        api_key_env: Some("LOCAL_KEY".into()),
        ..cfg
    };
    let err = build_provider(&named, &env(&[]))
        .err()
        .expect("missing key");
    assert!(err.to_string().contains("LOCAL_KEY"), "{err}");
}

#[tokio::test]
async fn a_scripted_provider_is_built_from_its_script_file() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(&script, r#"[{"text":"hi"}]"#).unwrap();
    let yaml = format!(
        "models:\n  default:\n    provider: scripted\n    model: demo\n    script: {}\n",
        script.display()
    );
    let cfg = resolve(&yaml, Role::Orchestrator).unwrap();
    assert_eq!(cfg.script.as_deref(), Some(script.as_path()));
    let provider = build_provider(&cfg, &env(&[])).unwrap();
    assert_eq!(provider.name(), "scripted");
    let response = provider
        .chat(&ChatRequest {
            model: cfg.model.clone(),
            system: String::new(),
            tools: vec![],
            messages: vec![Message::user_text("hello")],
            max_tokens: cfg.max_tokens,
        })
        .await
        .unwrap();
    assert_eq!(response.message().text(), "hi");

    // A missing script file is an error naming it.
    let missing = ModelConfig {
        script: Some(dir.path().join("nope.json")),
        ..cfg
    };
    let err = build_provider(&missing, &env(&[]))
        .err()
        .expect("no script");
    assert!(matches!(err, ConfigError::Script { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.json"), "{err}");
}

#[test]
fn server_defaults_can_be_validated_on_their_own() {
    assert!(server_defaults().validate("server defaults").is_ok());
    let bad = ModelConfig {
        max_tokens: 0,
        ..server_defaults()
    };
    let err = bad.validate("server defaults").unwrap_err().to_string();
    assert!(err.contains("server defaults.max_tokens"), "{err}");
}

#[test]
fn yaml_syntax_errors_give_a_line() {
    for yaml in [
        "models:\n  default:\n    model: 'unterminated\n",
        "label: a: b\n",
        "models:\n\tdefault: {}\n",
    ] {
        let err = parse_err(yaml);
        assert!(err.starts_with(".github/missions.yml line "), "{err}");
    }
}

#[test]
fn engines_read_and_know_their_family() {
    let yaml = "models:\n  default:\n    provider: anthropic\n    model: claude-sonnet-4-5\n  worker:\n    engine: claude-code\n  scrutiny:\n    provider: openai\n    model: gpt-4.1\n    engine: codex\n  user-testing:\n    provider: openai\n    model: qwen2.5-coder-1.5b-instruct\n    base_url: http://127.0.0.1:8080/v1\n    prices: { input: 0, output: 0, cache_read: 0, cache_write: 0 }\n";
    let models = parse_repo_config(yaml).unwrap();
    let worker = models
        .resolve(Role::Worker, &ModelConfig::default())
        .unwrap();
    let scrutiny = models
        .resolve(Role::Scrutiny, &ModelConfig::default())
        .unwrap();
    let tester = models
        .resolve(Role::UserTesting, &ModelConfig::default())
        .unwrap();
    let orchestrator = models
        .resolve(Role::Orchestrator, &ModelConfig::default())
        .unwrap();
    assert_eq!(worker.engine, Engine::ClaudeCode);
    assert_eq!(scrutiny.engine, Engine::Codex);
    assert_eq!(orchestrator.engine, Engine::Builtin);
    // Claude Code is Anthropic's whatever model name it is given; Codex OpenAI's.
    assert_eq!(worker.family(), ModelFamily::Anthropic);
    assert_eq!(scrutiny.family(), ModelFamily::OpenAi);
    assert_eq!(
        tester.family(),
        ModelFamily::Other("qwen2.5-coder-1.5b-instruct".into())
    );
    let mut scripted_codex = ModelConfig::new(ProviderKind::Scripted, "scripted-demo");
    scripted_codex.engine = Engine::Codex;
    assert_eq!(scripted_codex.family(), ModelFamily::OpenAi);
}

#[test]
fn an_engine_on_the_wrong_api_or_misspelt_is_refused_with_what_to_do() {
    let wrong =
        "models:\n  worker:\n    provider: openai\n    model: gpt-4.1\n    engine: claude-code\n";
    let err = parse_repo_config(wrong)
        .unwrap()
        .resolve(Role::Worker, &ModelConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("models.worker.engine"), "{err}");
    assert!(err.contains("speaks the anthropic API"), "{err}");
    let typo = "models:\n  worker:\n    engine: claude\n";
    let err = parse_repo_config(typo).unwrap_err().to_string();
    assert!(err.contains("unknown engine `claude`"), "{err}");
    assert!(err.contains("claude-code, codex or acp:COMMAND"), "{err}");
    let acp = "models:\n  worker:\n    engine: \"acp:my-agent --acp\"\n";
    let cfg = parse_repo_config(acp)
        .unwrap()
        .resolve(Role::Worker, &ModelConfig::default())
        .unwrap();
    assert_eq!(cfg.engine, Engine::Acp("my-agent --acp".into()));
}
