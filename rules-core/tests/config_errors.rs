//! `Config::load` and `testing::load_tests` on broken configuration directories: each test
//! copies the shipped schemas, sources.json and outputs.json into a temporary directory,
//! breaks one thing and checks the file, JSON path and message of every reported error.

mod common;

use std::path::Path;

use rules_core::config::Config;
use rules_core::error::ConfigError;
use serde_json::{Value, json};
use tempfile::TempDir;

use common::shipped_conf;

/// Creates a configuration directory with copies of the shipped schemas, sources.json
/// and outputs.json, and an empty `rules/` directory.
fn base_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let conf = shipped_conf();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    for entry in std::fs::read_dir(conf.join("schemas")).unwrap() {
        let path = entry.unwrap().path();
        let target = dir.path().join("schemas").join(path.file_name().unwrap());
        std::fs::copy(&path, target).unwrap();
    }
    for name in ["sources.json", "outputs.json"] {
        std::fs::copy(conf.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    dir
}

fn write(dir: &TempDir, relative: &str, text: &str) {
    let path = dir.path().join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Returns a rule that loads in the base directory. Tests change one key of it.
fn valid_rule() -> Value {
    json!({
        "name": "r1",
        "description": "an added row",
        "logs": ["osquery"],
        "condition": {"field": "action", "eq": "added"},
        "outputs": ["slack:security"]
    })
}

fn rule_with(key: &str, value: Value) -> String {
    let mut rule = valid_rule();
    rule[key] = value;
    rule.to_string()
}

fn load_errors(dir: &TempDir) -> Vec<ConfigError> {
    match Config::load(dir.path()) {
        Ok(_) => panic!("the configuration loaded, but an error was expected"),
        Err(errors) => errors.0,
    }
}

/// Loads `dir`, requires exactly one error and returns it.
fn single_error(dir: &TempDir) -> ConfigError {
    let errors = load_errors(dir);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.into_iter().next().unwrap()
}

fn relative(dir: &TempDir, file: &Path) -> String {
    file.strip_prefix(dir.path())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Loads a directory whose only rule has `condition` and returns the single error.
fn condition_error(condition: Value) -> (TempDir, ConfigError) {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &rule_with("condition", condition));
    let error = single_error(&dir);
    (dir, error)
}

#[test]
fn load_accepts_base_directory() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &valid_rule().to_string());
    let config = Config::load(dir.path()).expect("the base directory loads");
    assert_eq!(config.rules.rules().len(), 1);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn load_rejects_unknown_rule_key() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &rule_with("bogus", json!(1)));
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$.bogus");
    assert!(
        error
            .message
            .starts_with("unknown field `bogus`, expected one of `name`, `description`, `logs`"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_string_for_logs() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &rule_with("logs", json!("osquery")));
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$.logs");
    assert!(
        error
            .message
            .starts_with("invalid type: string \"osquery\", expected a sequence"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_unknown_log_type_in_rule() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &rule_with("logs", json!(["syslog"])));
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$.logs[0]");
    assert!(
        error
            .message
            .starts_with("unknown log type \"syslog\"; defined log types: "),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("osquery:differential"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_undeclared_output() {
    let dir = base_dir();
    write(
        &dir,
        "rules/r1.json",
        &rule_with("outputs", json!(["slack:ops"])),
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$.outputs[0]");
    assert_eq!(
        error.message,
        "output \"slack:ops\" is not declared in outputs.json; declared outputs: slack:security"
    );
}

#[test]
fn load_rejects_duplicate_rule_names() {
    let dir = base_dir();
    write(&dir, "rules/a.json", &valid_rule().to_string());
    write(&dir, "rules/b.json", &valid_rule().to_string());
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/b.json");
    assert_eq!(error.path, "$.name");
    assert!(
        error
            .message
            .starts_with("duplicate rule name \"r1\": also defined in "),
        "{}",
        error.message
    );
    assert!(error.message.ends_with("a.json"), "{}", error.message);
}

#[test]
fn load_rejects_invalid_regex() {
    let (dir, error) = condition_error(json!({"all": [
        {"field": "action", "eq": "added"},
        {"field": "columns.path", "regex": "(unclosed"}
    ]}));
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$.condition.all[1].regex");
    assert!(
        error.message.starts_with("invalid regex \"(unclosed\": "),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("unclosed group"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_invalid_cidr_in_list() {
    let (_dir, error) =
        condition_error(json!({"field": "columns.address", "cidr": ["10.0.0.0/8", "10.0.0.0/33"]}));
    assert_eq!(error.path, "$.condition.cidr[1]");
    assert_eq!(
        error.message,
        "invalid CIDR \"10.0.0.0/33\": expected a network such as \"10.0.0.0/8\" or \"fd00::/8\""
    );
}

#[test]
fn load_rejects_invalid_cidr_string() {
    let (_dir, error) = condition_error(json!({"field": "columns.address", "cidr": "fd00::/129"}));
    assert_eq!(error.path, "$.condition.cidr");
    assert!(
        error.message.starts_with("invalid CIDR \"fd00::/129\""),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_predicate_with_two_operators() {
    let (_dir, error) = condition_error(json!({"field": "action", "eq": "added", "ne": "removed"}));
    assert_eq!(error.path, "$.condition");
    assert!(
        error
            .message
            .starts_with("a predicate needs exactly one operator, found 2; operators: eq, ne, in,"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_predicate_without_operator() {
    let (_dir, error) = condition_error(json!({"field": "action"}));
    assert_eq!(error.path, "$.condition");
    assert!(
        error
            .message
            .starts_with("a predicate needs exactly one operator, found 0; operators: eq, ne, in,"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_condition_without_field() {
    let (_dir, error) = condition_error(json!({"all": [], "any": []}));
    assert_eq!(error.path, "$.condition");
    assert!(
        error
            .message
            .starts_with("expected exactly one of \"all\", \"any\", \"not\", or a predicate"),
        "{}",
        error.message
    );
}

fn nested_not(levels: usize) -> Value {
    let mut condition = json!({"field": "action", "eq": "added"});
    for _ in 0..levels {
        condition = json!({ "not": condition });
    }
    condition
}

#[test]
fn load_rejects_condition_deeper_than_limit() {
    let levels = rules_core::condition::MAX_DEPTH + 1;
    let (_dir, error) = condition_error(nested_not(levels));
    assert_eq!(error.path, format!("$.condition{}", ".not".repeat(levels)));
    assert_eq!(
        error.message,
        format!(
            "condition nested deeper than {} levels",
            rules_core::condition::MAX_DEPTH
        )
    );
}

#[test]
fn load_accepts_condition_at_depth_limit() {
    let dir = base_dir();
    let condition = nested_not(rules_core::condition::MAX_DEPTH);
    write(&dir, "rules/r1.json", &rule_with("condition", condition));
    assert!(Config::load(dir.path()).is_ok());
}

#[test]
fn load_rejects_too_many_predicates() {
    let limit = rules_core::condition::MAX_PREDICATES;
    let predicates: Vec<Value> = (0..=limit)
        .map(|_| json!({"field": "action", "eq": "added"}))
        .collect();
    let (_dir, error) = condition_error(json!({ "any": predicates }));
    assert_eq!(error.path, format!("$.condition.any[{limit}]"));
    assert_eq!(
        error.message,
        format!("rule has more than {limit} predicates")
    );
}

#[test]
fn load_rejects_unknown_key_in_schema_entry() {
    let dir = base_dir();
    let schema = json!({"extra:log": {"parser": "json", "schema": {"a": "string"}, "bogus": 1}});
    write(&dir, "schemas/extra.json", &schema.to_string());
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "schemas/extra.json");
    assert_eq!(error.path, r#"$["extra:log"]["bogus"]"#);
    assert_eq!(
        error.message,
        "unknown key \"bogus\"; allowed keys: parser, schema, configuration"
    );
}

#[test]
fn load_rejects_unknown_key_in_configuration() {
    let dir = base_dir();
    let schema = json!({"extra:log": {
        "parser": "json",
        "schema": {"a": "string"},
        "configuration": {"bogus": 1}
    }});
    write(&dir, "schemas/extra.json", &schema.to_string());
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "schemas/extra.json");
    assert_eq!(error.path, r#"$["extra:log"].configuration["bogus"]"#);
    assert!(
        error
            .message
            .starts_with("unknown key \"bogus\"; allowed keys: optional_top_level_keys,"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_unknown_field_type() {
    let dir = base_dir();
    let schema = json!({"extra:log": {"parser": "json", "schema": {"a": "str"}}});
    write(&dir, "schemas/extra.json", &schema.to_string());
    let error = single_error(&dir);
    assert_eq!(error.path, r#"$["extra:log"].schema["a"]"#);
    assert_eq!(
        error.message,
        "unknown field type \"str\"; allowed: \"string\", \"integer\", \"float\", \"boolean\", {}, [] or a nested object schema"
    );
}

#[test]
fn load_rejects_optional_key_missing_from_schema() {
    let dir = base_dir();
    let schema = json!({"extra:log": {
        "parser": "json",
        "schema": {"a": "string"},
        "configuration": {"optional_top_level_keys": ["a", "b"]}
    }});
    write(&dir, "schemas/extra.json", &schema.to_string());
    let error = single_error(&dir);
    assert_eq!(
        error.path,
        r#"$["extra:log"].configuration.optional_top_level_keys[1]"#
    );
    assert!(
        error
            .message
            .starts_with("optional key \"b\" is not in the schema of \"extra:log\""),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_unknown_source_service() {
    let dir = base_dir();
    write(
        &dir,
        "sources.json",
        r#"{"syslog": {"osquery": {"logs": ["osquery"]}}}"#,
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "sources.json");
    assert_eq!(error.path, r#"$["syslog"]"#);
    assert_eq!(
        error.message,
        "unknown service \"syslog\"; allowed: file, kinesis, s3, sns, streamalert_app"
    );
}

#[test]
fn load_rejects_unknown_log_type_in_sources() {
    let dir = base_dir();
    write(
        &dir,
        "sources.json",
        r#"{"file": {"osquery": {"logs": ["osquery", "syslog"]}}}"#,
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "sources.json");
    assert_eq!(error.path, r#"$["file"]["osquery"].logs[1]"#);
    assert!(
        error
            .message
            .starts_with("unknown log type \"syslog\"; defined log types: edgealert:internal,"),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_missing_sources_file() {
    let dir = base_dir();
    std::fs::remove_file(dir.path().join("sources.json")).unwrap();
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "sources.json");
    assert_eq!(error.path, "$");
    assert!(
        error.message.starts_with("missing file: "),
        "{}",
        error.message
    );
}

#[test]
fn load_reports_line_and_column_of_malformed_rule() {
    let dir = base_dir();
    write(
        &dir,
        "rules/r1.json",
        "{\n  \"name\": \"r1\",\n  \"logs\": [}\n",
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$");
    assert!(
        error
            .message
            .starts_with("invalid JSON at line 3 column 12: "),
        "{}",
        error.message
    );
}

#[test]
fn load_reports_line_and_column_of_malformed_schema() {
    let dir = base_dir();
    write(&dir, "schemas/extra.json", "{\"extra:log\": \n\n  nope}");
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "schemas/extra.json");
    assert!(
        error
            .message
            .starts_with("invalid JSON at line 3 column 4: "),
        "{}",
        error.message
    );
}

#[test]
fn load_rejects_unknown_classifier_mode() {
    let dir = base_dir();
    write(
        &dir,
        "edgealert.json",
        r#"{"classifier": {"mode": "loose"}}"#,
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "edgealert.json");
    assert_eq!(error.path, "$.classifier.mode");
    assert!(
        error.message.contains("`strict`") && error.message.contains("`lenient`"),
        "{}",
        error.message
    );
}

#[test]
fn load_reports_every_error_at_once() {
    let dir = base_dir();
    let bad_regex = json!({"field": "columns.path", "regex": "["});
    write(&dir, "rules/r1.json", &rule_with("condition", bad_regex));
    write(
        &dir,
        "rules/r2.json",
        &rule_with("name", json!("r2")).replace("slack:security", "slack:ops"),
    );
    let schema = json!({"extra:log": {"parser": "json", "schema": {"a": "str"}}});
    write(&dir, "schemas/extra.json", &schema.to_string());
    write(
        &dir,
        "sources.json",
        r#"{"syslog": {"x": {"logs": ["osquery"]}}, "file": {"osquery": {"logs": ["osquery"]}}}"#,
    );
    write(&dir, "edgealert.json", r#"{"classifier": {"bogus": true}}"#);

    let errors = load_errors(&dir);
    let found: Vec<(String, String)> = errors
        .iter()
        .map(|error| (relative(&dir, &error.file), error.path.clone()))
        .collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    for expected in [
        ("edgealert.json", "$.classifier.bogus"),
        ("schemas/extra.json", r#"$["extra:log"].schema["a"]"#),
        ("sources.json", r#"$["syslog"]"#),
        ("rules/r1.json", "$.condition.regex"),
        ("rules/r2.json", "$.outputs[0]"),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned());
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
}

#[test]
fn load_fails_whole_directory_for_one_bad_rule() {
    let dir = base_dir();
    write(&dir, "rules/good.json", &valid_rule().to_string());
    write(
        &dir,
        "rules/bad.json",
        &rule_with("name", json!("bad name")),
    );
    let errors = load_errors(&dir);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(relative(&dir, &errors[0].file), "rules/bad.json");
    assert_eq!(errors[0].path, "$.name");
}

#[test]
fn load_fails_whole_directory_for_one_bad_schema() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &valid_rule().to_string());
    write(&dir, "schemas/extra.json", "[]");
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "schemas/extra.json");
    assert_eq!(error.path, "$");
}

fn csv_schema() -> String {
    json!({"extra:csv": {"parser": "csv", "schema": {"a": "string"}}}).to_string()
}

#[test]
fn load_disables_csv_schema_with_warning() {
    let dir = base_dir();
    write(&dir, "schemas/extra.json", &csv_schema());
    let config = Config::load(dir.path()).expect("a csv schema alone is only a warning");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(relative(&dir, &warning.file), "schemas/extra.json");
    assert_eq!(warning.path, r#"$["extra:csv"]"#);
    assert_eq!(
        warning.message,
        "log type \"extra:csv\" is not loaded: parser \"csv\" is not supported; edgealert supports \"json\""
    );
    assert!(config.schema("extra:csv").is_none());
    assert_eq!(config.disabled_schemas.len(), 1);
    assert_eq!(config.disabled_schemas[0].name, "extra:csv");
}

#[test]
fn load_rejects_csv_schema_in_sources() {
    let dir = base_dir();
    write(&dir, "schemas/extra.json", &csv_schema());
    write(
        &dir,
        "sources.json",
        r#"{"file": {"osquery": {"logs": ["osquery", "extra:csv"]}}}"#,
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "sources.json");
    assert_eq!(error.path, r#"$["file"]["osquery"].logs[1]"#);
    assert_eq!(
        error.message,
        "log type \"extra:csv\" cannot be used: parser \"csv\" is not supported; edgealert supports \"json\""
    );
}

#[test]
fn load_rejects_csv_schema_in_rule() {
    let dir = base_dir();
    write(&dir, "schemas/extra.json", &csv_schema());
    write(
        &dir,
        "rules/r1.json",
        &rule_with("logs", json!(["extra:csv"])),
    );
    let error = single_error(&dir);
    assert_eq!(relative(&dir, &error.file), "rules/r1.json");
    assert_eq!(error.path, "$.logs[0]");
    assert!(
        error.message.starts_with("unknown log type \"extra:csv\""),
        "{}",
        error.message
    );
}

/// Returns a test event that passes `load_tests` in a directory with rule `r1`.
fn valid_test_event() -> Value {
    json!({
        "data": {"name": "q", "columns": {"pid": "1"}, "action": "added"},
        "description": "an added row fires r1",
        "log": "osquery:differential",
        "service": "file",
        "source": "osquery",
        "trigger_rules": ["r1"]
    })
}

/// Writes `events` as the only test file and returns the errors of `load_tests`.
fn test_file_errors(events: Value) -> (TempDir, Vec<ConfigError>) {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &valid_rule().to_string());
    let config = Config::load(dir.path()).expect("the base directory loads");
    write(&dir, "rules/tests/r1/events.json", &events.to_string());
    let errors = match rules_core::testing::load_tests(&dir.path().join("rules/tests"), &config) {
        Ok(_) => panic!("the test events loaded, but an error was expected"),
        Err(errors) => errors.0,
    };
    (dir, errors)
}

#[test]
fn load_tests_accepts_valid_event() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &valid_rule().to_string());
    let config = Config::load(dir.path()).unwrap();
    let events = json!([valid_test_event()]).to_string();
    write(&dir, "rules/tests/r1/events.json", &events);
    let cases = rules_core::testing::load_tests(&dir.path().join("rules/tests"), &config)
        .expect("the test event loads");
    assert_eq!(cases.len(), 1);
}

#[test]
fn load_tests_rejects_unknown_trigger_rule() {
    let mut event = valid_test_event();
    event["trigger_rules"] = json!(["r1", "nope"]);
    let (dir, errors) = test_file_errors(json!([event]));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        relative(&dir, &errors[0].file),
        "rules/tests/r1/events.json"
    );
    assert_eq!(errors[0].path, "$[0].trigger_rules[1]");
    assert_eq!(errors[0].message, "unknown rule \"nope\"");
}

#[test]
fn load_tests_rejects_data_with_override_record() {
    let mut event = valid_test_event();
    event["override_record"] = json!({"name": "q"});
    let (_dir, errors) = test_file_errors(json!([valid_test_event(), event]));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "$[1]");
    assert_eq!(
        errors[0].message,
        "give either \"data\" or \"override_record\", not both"
    );
}

#[test]
fn load_tests_rejects_event_without_record() {
    let mut event = valid_test_event();
    event.as_object_mut().unwrap().remove("data");
    let (_dir, errors) = test_file_errors(json!([event]));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "$[0]");
    assert_eq!(errors[0].message, "missing \"data\" or \"override_record\"");
}

#[test]
fn load_tests_rejects_unknown_log_type() {
    let mut event = valid_test_event();
    event["log"] = json!("syslog");
    let (_dir, errors) = test_file_errors(json!([event]));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "$[0].log");
    assert!(
        errors[0]
            .message
            .starts_with("unknown log type \"syslog\"; defined log types: "),
        "{}",
        errors[0].message
    );
}

#[test]
fn load_tests_rejects_unknown_key() {
    let mut event = valid_test_event();
    event["bogus"] = json!(true);
    let (dir, errors) = test_file_errors(json!([event]));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        relative(&dir, &errors[0].file),
        "rules/tests/r1/events.json"
    );
    assert!(
        errors[0]
            .message
            .starts_with("unknown field `bogus`, expected one of `data`, `override_record`"),
        "{}",
        errors[0].message
    );
}

// NOTE: rule::json_path prefixes every serde path with "$.", so an error inside the
// top-level array of a test file gets the path "$.[0].bogus".
#[test]
fn load_tests_unknown_key_path() {
    let mut event = valid_test_event();
    event["bogus"] = json!(true);
    let (_dir, errors) = test_file_errors(json!([event]));
    assert_eq!(errors[0].path, "$[0].bogus");
}

#[test]
fn load_tests_rejects_object_instead_of_array() {
    let (_dir, errors) = test_file_errors(valid_test_event());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "$");
    assert!(
        errors[0]
            .message
            .starts_with("invalid type: map, expected a sequence"),
        "{}",
        errors[0].message
    );
}

#[test]
fn load_tests_reports_every_file() {
    let dir = base_dir();
    write(&dir, "rules/r1.json", &valid_rule().to_string());
    let config = Config::load(dir.path()).unwrap();
    let mut unknown_rule = valid_test_event();
    unknown_rule["trigger_rules"] = json!(["nope"]);
    write(
        &dir,
        "rules/tests/r1/a.json",
        &json!([unknown_rule]).to_string(),
    );
    write(&dir, "rules/tests/r1/b.json", "[");
    let errors = rules_core::testing::load_tests(&dir.path().join("rules/tests"), &config)
        .expect_err("both files are invalid")
        .0;
    let files: Vec<String> = errors
        .iter()
        .map(|error| relative(&dir, &error.file))
        .collect();
    assert_eq!(files, ["rules/tests/r1/a.json", "rules/tests/r1/b.json"]);
}
