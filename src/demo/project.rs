//! The demo's sample repository: `textstats`, a small Python program with tests,
//! in the stages the scripted workers take it through. Python because every
//! machine the demo targets has `python3`, and its tests run in well under a second.

/// Which features the program has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub lines: bool,
    pub chars: bool,
    pub top: bool,
    /// A worker's slip: `count_words` miscounts (the test suite catches it).
    pub broken_words: bool,
    /// A worker's slip the mission's own checks do not look for: a `TODO`
    /// left in the program (the repository's CI lint catches it).
    pub todo_left: bool,
}

impl Stage {
    pub const START: Stage = Stage {
        lines: false,
        chars: false,
        top: false,
        broken_words: false,
        todo_left: false,
    };
}

pub const ISSUE_TITLE: &str =
    "textstats: count lines and characters, and list the most frequent words";

pub const ISSUE_BODY: &str = "textstats only counts words today. Please add:\n\n\
- `--lines`: print the number of lines\n\
- `--chars`: print the number of characters\n\
- `--top N`: print the N most frequent words with their counts\n\n\
Keep `python3 textstats.py FILE` printing the word count as it does now.";

/// The program at `stage`.
pub fn program(stage: Stage) -> String {
    let mut out = String::from(
        "\"\"\"textstats: small statistics about a text file.\"\"\"\n\
         import argparse\n\
         import sys\n",
    );
    if stage.top {
        out.push_str("from collections import Counter\n");
    }
    out.push_str("\n\ndef count_words(text):\n");
    if stage.broken_words {
        out.push_str("    return len(text.split(\" \"))\n");
    } else {
        out.push_str("    return len(text.split())\n");
    }
    if stage.lines {
        out.push_str("\n\ndef count_lines(text):\n    return len(text.splitlines())\n");
    }
    if stage.chars {
        out.push_str("\n\ndef count_chars(text):\n    return len(text)\n");
    }
    if stage.todo_left {
        out.push_str("\n\n# TODO: count characters without the final newline?\n");
    }
    if stage.top {
        out.push_str(
            "\n\ndef top_words(text, n):\n    \
             counts = Counter(w.lower() for w in text.split())\n    \
             return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]\n",
        );
    }
    out.push_str(
        "\n\ndef main(argv=None):\n    \
         parser = argparse.ArgumentParser(prog=\"textstats\")\n    \
         parser.add_argument(\"file\")\n",
    );
    if stage.lines {
        out.push_str("    parser.add_argument(\"--lines\", action=\"store_true\")\n");
    }
    if stage.chars {
        out.push_str("    parser.add_argument(\"--chars\", action=\"store_true\")\n");
    }
    if stage.top {
        out.push_str("    parser.add_argument(\"--top\", type=int, metavar=\"N\")\n");
    }
    out.push_str(
        "    args = parser.parse_args(argv)\n    \
         with open(args.file, encoding=\"utf-8\") as f:\n        \
         text = f.read()\n",
    );
    if stage.lines {
        out.push_str("    if args.lines:\n        print(f\"lines: {count_lines(text)}\")\n        return 0\n");
    }
    if stage.chars {
        out.push_str("    if args.chars:\n        print(f\"chars: {count_chars(text)}\")\n        return 0\n");
    }
    if stage.top {
        out.push_str(
            "    if args.top is not None:\n        \
             for word, count in top_words(text, args.top):\n            \
             print(f\"{word} {count}\")\n        \
             return 0\n",
        );
    }
    out.push_str(
        "    print(f\"words: {count_words(text)}\")\n    return 0\n\n\n\
         if __name__ == \"__main__\":\n    sys.exit(main())\n",
    );
    out
}

/// The tests at `stage` (the tests follow the features, not the slip).
pub fn tests(stage: Stage) -> String {
    let mut imports = vec!["count_words"];
    if stage.lines {
        imports.push("count_lines");
    }
    if stage.chars {
        imports.push("count_chars");
    }
    if stage.top {
        imports.push("top_words");
    }
    let mut out = format!(
        "import unittest\n\nfrom textstats import {}\n\n\n\
         class TextStats(unittest.TestCase):\n    \
         def test_counts_words(self):\n        \
         self.assertEqual(count_words(\"a b  c\\nd\"), 4)\n\n    \
         def test_empty_text_has_no_words(self):\n        \
         self.assertEqual(count_words(\"\"), 0)\n",
        imports.join(", ")
    );
    if stage.lines {
        out.push_str(
            "\n    def test_counts_lines(self):\n        \
             self.assertEqual(count_lines(\"one\\ntwo\\nthree\\n\"), 3)\n",
        );
    }
    if stage.chars {
        out.push_str(
            "\n    def test_counts_chars(self):\n        \
             self.assertEqual(count_chars(\"héllo\\n\"), 6)\n",
        );
    }
    if stage.top {
        out.push_str(
            "\n    def test_top_words_breaks_ties_alphabetically(self):\n        \
             self.assertEqual(top_words(\"b a b c a d\", 2), [(\"a\", 2), (\"b\", 2)])\n",
        );
    }
    out.push_str("\n\nif __name__ == \"__main__\":\n    unittest.main()\n");
    out
}

pub const SAMPLE_TEXT: &str = "the quick brown fox\njumps over the lazy dog\nthe end\n";

pub const README: &str = "# textstats\n\nSmall statistics about a text file.\n\n\
    ```\npython3 textstats.py FILE\n```\n\nTests: `python3 -m unittest -q`.\n";

pub const AGENTS_MD: &str = "# Notes for agents\n\n\
    - Run the tests with `python3 -m unittest -q` before you finish.\n\
    - Keep the program in one file, `textstats.py`, with no dependencies beyond Python's standard library.\n";

/// `.github/missions.yml` for the demo: the scripted model reads its scripts
/// from `script_dir` (outside the repository).
pub fn missions_yml(script_dir: &str, budget_usd: f64) -> String {
    format!(
        "# The demo's mission settings. See docs/configuration.md.\n\
         label: mission\n\
         budget:\n  usd: {budget_usd}\n\
         models:\n  default:\n    provider: scripted\n    model: scripted-demo\n    script: \"{script_dir}/{{agent}}.json\"\n\
         \x20   # What the budget counts the scripted answers at: Claude Sonnet's prices per million tokens.\n\
         \x20   prices: {{ input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 }}\n\
         commands:\n  test: [\"python3 -m unittest -q\"]\n"
    )
}

/// `.github/missions.yml` for the demo with other models than the scripted
/// one: `models` is the `models:` section as YAML
/// ([`crate::llm::config::ModelsConfig::to_yaml`]); `test_command` is what
/// scrutiny runs (the sample project's tests), if any.
pub fn missions_yml_with_models(
    models: &str,
    budget_usd: f64,
    test_command: Option<&str>,
) -> String {
    let mut out = format!(
        "# The demo's mission settings. See docs/configuration.md.\n\
         label: mission\n\
         budget:\n  usd: {budget_usd}\n"
    );
    out.push_str(models);
    if !models.ends_with('\n') {
        out.push('\n');
    }
    if let Some(test) = test_command {
        out.push_str(&format!("commands:\n  test: [{test:?}]\n"));
    }
    out
}

/// The sample project's test command.
pub const TEST_COMMAND: &str = "python3 -m unittest -q";

/// The repository's files at the start: path → content.
pub fn files(script_dir: &str, workflow_yaml: &str) -> Vec<(String, String)> {
    vec![
        ("README.md".into(), README.into()),
        ("AGENTS.md".into(), AGENTS_MD.into()),
        ("textstats.py".into(), program(Stage::START)),
        ("test_textstats.py".into(), tests(Stage::START)),
        ("sample.txt".into(), SAMPLE_TEXT.into()),
        (".github/missions.yml".into(), missions_yml(script_dir, 5.0)),
        (
            ".github/workflows/missions.yml".into(),
            workflow_yaml.into(),
        ),
    ]
}
