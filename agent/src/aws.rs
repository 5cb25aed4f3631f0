//! AWS SDK configuration shared by the Kinesis forwarder and the secret loaders.
//!
//! The SDK crates are built without their default HTTPS client; this module supplies one on
//! rustls with ring, the TLS stack reqwest also uses, so the binary carries one stack.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Loads the SDK configuration from the default chains (environment, shared profile, web
/// identity, ECS and EC2 instance metadata), with optional region and endpoint overrides.
pub async fn load(region: Option<&str>, endpoint: Option<&str>) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
