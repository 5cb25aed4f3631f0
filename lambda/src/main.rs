//! `bootstrap`: the Lambda's executable for the `provided.al2023` runtime.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::kinesis::KinesisEvent;
use edgealert_lambda::handler::{BatchResponse, Handler, InitError};
use edgealert_lambda::settings::Settings;
use edgealert_lambda::{logging, runtime_api};
use lambda_runtime::{LambdaEvent, service_fn};

fn main() -> ExitCode {
    logging::init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "Cannot start the async runtime.");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let started = Instant::now();
    let handler = match init().await {
        Ok(handler) => Arc::new(handler),
        Err(error) => {
            tracing::error!(error_type = error.kind(), error = %error, "Initialization failed; the function cannot start.");
            if let Err(report) =
                runtime_api::report_init_error(error.kind(), &error.to_string()).await
            {
                tracing::error!(error = %report, "Reporting the init error to the Runtime API failed.");
            }
            return ExitCode::FAILURE;
        }
    };
    let config = handler.config();
    tracing::info!(
        conf = %config.dir.display(),
        config_digest = %config.digest,
        rules = config.rules.rules().len(),
        log_types = config.schemas.len(),
        init_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "Initialized."
    );
    let service = service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let handler = Arc::clone(&handler);
        async move { Ok::<BatchResponse, lambda_runtime::Error>(invoke(&handler, event).await) }
    });
    match lambda_runtime::run(service).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "The Lambda runtime loop stopped.");
            ExitCode::FAILURE
        }
    }
}

async fn init() -> Result<Handler, InitError> {
    let settings = Settings::from_env().map_err(InitError::Settings)?;
    Handler::init(&settings).await
}

async fn invoke(handler: &Handler, event: LambdaEvent<KinesisEvent>) -> BatchResponse {
    let deadline = deadline_instant(event.context.deadline);
    handler.handle(&event.payload, deadline).await.response
}

/// Converts the invocation deadline, in milliseconds since the Unix epoch, to an instant.
fn deadline_instant(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    tokio::time::Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
