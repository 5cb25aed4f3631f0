//! The part of the Lambda Runtime API that `lambda_runtime` does not cover: reporting a
//! failed cold start to `POST /2018-06-01/runtime/init/error`.

use std::time::Duration;

/// Reports an init failure, so Lambda shows the reason instead of a bare exit. Returns
/// an error message when the report could not be sent.
pub async fn report_init_error(kind: &str, message: &str) -> Result<(), String> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set".to_owned())?;
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let body = serde_json::json!({
        "errorMessage": message,
        "errorType": kind,
        "stackTrace": [],
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", kind)
        .json(&body)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "the Runtime API answered HTTP {}",
            response.status()
        ))
    }
}
