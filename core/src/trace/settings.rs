//! What the standard OpenTelemetry environment variables ask of tracing: whether and where to
//! export, with which headers, at what sampling, in what batches. A value core cannot honour is
//! refused at start with the variable's name and what it accepts, never silently ignored.

use super::sampler::{Root, Sampler};
use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

/// The tracing configuration of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub sampler: Sampler,
    /// Where spans are posted; `None`: nothing is exported.
    pub export: Option<Export>,
}

/// Where and how spans are exported (OTLP over HTTP, protobuf).
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub destination: Destination,
    pub timeout: Duration,
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: Vec<(String, String)>,
    pub batch: Batch,
}

/// Who receives the spans.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// The collector the `OTEL_EXPORTER_OTLP_*` variables name.
    Collector {
        /// The full URL spans are posted to (`…/v1/traces`).
        url: String,
        headers: Vec<(String, String)>,
        /// A PEM file of the CAs that vouch for an `https://` collector.
        certificate: Option<String>,
    },
    /// No collector named: the agent's registry (its bounded trace store), over mutual TLS with
    /// the agent's identity; nowhere for an agent without a registry.
    Registry,
}

/// The batch span processor's bounds (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch {
    /// Most spans waiting to be exported; more are dropped (and counted).
    pub max_queue: usize,
    /// Most spans in one request.
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill.
    pub delay: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Batch { max_queue: 2048, max_batch: 512, delay: Duration::from_millis(5000) }
    }
}

/// Where spans go when `OTEL_TRACES_EXPORTER=otlp` names no endpoint (the OTLP/HTTP default).
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

impl Settings {
    /// The settings the process environment asks for.
    pub fn from_env() -> Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The settings `var` gives (a variable's value, `None` when unset or empty).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let sampler = sampler(var("OTEL_TRACES_SAMPLER").as_deref(), var("OTEL_TRACES_SAMPLER_ARG").as_deref())?;
        let disabled = match var("OTEL_SDK_DISABLED").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(invalid("OTEL_SDK_DISABLED", other, "true or false")),
        };
        let exporter = var("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase());
        let asked = match exporter.as_deref() {
            None => false,
            Some("otlp") => true,
            Some("none") => return Ok(Settings { sampler, export: None }),
            Some(other) => return Err(invalid("OTEL_TRACES_EXPORTER", other, "otlp or none (toolmesh exports OTLP over HTTP only)")),
        };
        if disabled {
            return Ok(Settings { sampler, export: None });
        }
        let either = |name: &str| var(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}")).or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{name}")));
        if let Some(protocol) = either("PROTOCOL").filter(|p| p.trim() != "http/protobuf") {
            return Err(invalid("OTEL_EXPORTER_OTLP_PROTOCOL", &protocol, "http/protobuf (the protocol toolmesh exports)"));
        }
        let signal = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let generic = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        // No collector named: the registry keeps the spans (OpenTelemetry's localhost default
        // only when the exporter is asked for by name).
        let destination =
            if signal.is_none() && generic.is_none() && !asked { Destination::Registry } else { collector(&var, signal, generic)? };
        let timeout = Duration::from_millis(millis(either("TIMEOUT").as_deref(), "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?);
        let defaults = Batch::default();
        let batch = Batch {
            max_queue: count(var("OTEL_BSP_MAX_QUEUE_SIZE").as_deref(), "OTEL_BSP_MAX_QUEUE_SIZE", defaults.max_queue)?,
            max_batch: count(var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").as_deref(), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", defaults.max_batch)?,
            delay: Duration::from_millis(millis(var("OTEL_BSP_SCHEDULE_DELAY").as_deref(), "OTEL_BSP_SCHEDULE_DELAY", 5000)?),
        };
        let export = Export {
            destination,
            timeout,
            service_name: var("OTEL_SERVICE_NAME").map(|s| s.trim().to_owned()),
            resource: pairs("OTEL_RESOURCE_ATTRIBUTES", var("OTEL_RESOURCE_ATTRIBUTES").as_deref())?,
            batch: Batch { max_batch: batch.max_batch.min(batch.max_queue), ..batch },
        };
        Ok(Settings { sampler, export: Some(export) })
    }
}

/// The collector the variables name: its URL, headers and CA file.
fn collector(var: &impl Fn(&str) -> Option<String>, signal: Option<String>, generic: Option<String>) -> Result<Destination> {
    let url = match (signal, generic) {
        (Some(url), _) => url.trim().to_owned(),
        (None, base) => format!("{}/v1/traces", base.as_deref().unwrap_or(DEFAULT_ENDPOINT).trim().trim_end_matches('/')),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.parse::<http::Uri>().is_err() {
        return Err(invalid("the OTLP traces endpoint", &url, "an http:// or https:// URL, such as http://localhost:4318"));
    }
    let mut headers = pairs("OTEL_EXPORTER_OTLP_HEADERS", var("OTEL_EXPORTER_OTLP_HEADERS").as_deref())?;
    for (name, value) in pairs("OTEL_EXPORTER_OTLP_TRACES_HEADERS", var("OTEL_EXPORTER_OTLP_TRACES_HEADERS").as_deref())? {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        headers.push((name, value));
    }
    for (name, value) in &headers {
        if http::HeaderName::try_from(name.as_str()).is_err() || http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err(invalid("OTEL_EXPORTER_OTLP_HEADERS", name, "name=value pairs that are valid HTTP headers"));
        }
    }
    let certificate = var("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE").or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE"));
    Ok(Destination::Collector { url, headers, certificate })
}

fn invalid(what: &str, value: &str, accepted: &str) -> Error {
    Error::new(ErrorKind::InvalidConfig, format!("{what} is '{value}': it must be {accepted}"))
}

fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampler> {
    let ratio = || -> Result<f64> {
        match arg.map(str::trim) {
            None => Ok(1.0),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| invalid("OTEL_TRACES_SAMPLER_ARG", text, "a ratio from 0 to 1, such as 0.25")),
        }
    };
    Ok(match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
        None | Some("parentbased_always_on") => Sampler::ParentBased(Root::AlwaysOn),
        Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
        Some("parentbased_traceidratio") => Sampler::ParentBased(Root::TraceIdRatio(ratio()?)),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatio(ratio()?),
        Some(other) => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                other,
                "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio",
            ))
        }
    })
}

/// `key=value,key2=value2`, values percent-decoded (the W3C baggage form OpenTelemetry uses).
fn pairs(variable: &str, text: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(text) = text else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| invalid(variable, item, "comma-separated key=value pairs"))?;
        let value = crate::text::percent_decode(value.trim()).ok_or_else(|| invalid(variable, item, "key=value pairs, percent-encoded"))?;
        out.push((key.trim().to_owned(), value));
    }
    Ok(out)
}

fn millis(text: Option<&str>, variable: &str, default: u64) -> Result<u64> {
    match text.map(str::trim) {
        None => Ok(default),
        Some(text) => text.parse().ok().ok_or_else(|| invalid(variable, text, "a whole number of milliseconds")),
    }
}

fn count(text: Option<&str>, variable: &str, default: usize) -> Result<usize> {
    match text.map(str::trim) {
        None => Ok(default),
        Some(text) => text.parse().ok().filter(|n| *n > 0).ok_or_else(|| invalid(variable, text, "a whole number above 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings> {
        Settings::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    /// The collector's URL, headers and CA file of settings that name one.
    fn collector(settings: Result<Settings>) -> (String, Vec<(String, String)>, Option<String>) {
        match settings.unwrap().export.map(|e| e.destination) {
            Some(Destination::Collector { url, headers, certificate }) => (url, headers, certificate),
            other => panic!("no collector: {other:?}"),
        }
    }

    #[test]
    fn with_no_collector_named_spans_go_to_the_registry_and_the_default_sampler_records_everything() {
        let default = settings(&[]).unwrap();
        assert_eq!(default.sampler, Sampler::ParentBased(Root::AlwaysOn));
        let export = default.export.unwrap();
        assert_eq!((export.destination, export.batch), (Destination::Registry, Batch::default()));
        let off = settings(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap();
        assert_eq!(off.export, None);
        assert_eq!(settings(&[("OTEL_TRACES_EXPORTER", "none")]).unwrap().export, None, "none turns the registry default off too");
        assert_eq!(settings(&[("OTEL_SDK_DISABLED", "true")]).unwrap().export, None);
        assert_eq!(collector(settings(&[("OTEL_TRACES_EXPORTER", "otlp")])).0, "http://localhost:4318/v1/traces");
        let registry = settings(&[("OTEL_BSP_SCHEDULE_DELAY", "100"), ("OTEL_SERVICE_NAME", "front")]).unwrap().export.unwrap();
        assert_eq!((registry.batch.delay, registry.service_name.as_deref()), (Duration::from_millis(100), Some("front")));
    }

    #[test]
    fn the_signal_endpoint_is_used_as_written_and_the_generic_one_gets_the_traces_path() {
        assert_eq!(
            collector(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/")])).0,
            "https://collector:4318/v1/traces"
        );
        let both = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/custom")]);
        assert_eq!(collector(both).0, "http://b:2/custom");
    }

    #[test]
    fn headers_resource_and_batch_bounds_are_read_from_their_variables() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-tenant=one"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-Tenant=two"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=mesh"),
            ("OTEL_SERVICE_NAME", "front"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3000"),
        ];
        let (_, headers, _) = collector(settings(&vars));
        let export = settings(&vars).unwrap().export.unwrap();
        assert_eq!(headers, [("api-key".to_owned(), "a b".to_owned()), ("X-Tenant".to_owned(), "two".to_owned())]);
        assert_eq!(export.resource[0], ("deployment.environment".to_owned(), "prod".to_owned()));
        assert_eq!(export.service_name.as_deref(), Some("front"));
        assert_eq!(export.batch, Batch { max_queue: 100, max_batch: 100, delay: Duration::from_millis(200) });
        assert_eq!(export.timeout, Duration::from_secs(3));
    }

    #[test]
    fn samplers_are_read_with_their_ratio() {
        let sampler = |name: &str, arg: Option<&str>| {
            let mut vars = vec![("OTEL_TRACES_SAMPLER", name)];
            vars.extend(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)));
            settings(&vars).map(|s| s.sampler)
        };
        assert_eq!(sampler("parentbased_traceidratio", Some("0.25")).unwrap(), Sampler::ParentBased(Root::TraceIdRatio(0.25)));
        assert_eq!(sampler("traceidratio", None).unwrap(), Sampler::TraceIdRatio(1.0));
        assert_eq!(sampler("always_off", None).unwrap(), Sampler::AlwaysOff);
        assert_eq!(sampler("ALWAYS_ON", None).unwrap(), Sampler::AlwaysOn);
        assert_eq!(sampler("parentbased_always_off", None).unwrap(), Sampler::ParentBased(Root::AlwaysOff));
    }

    #[test]
    fn values_core_cannot_honour_are_refused_naming_the_variable_and_what_it_takes() {
        for (vars, names) in [
            (vec![("OTEL_TRACES_SAMPLER", "jaeger_remote")], "OTEL_TRACES_SAMPLER is 'jaeger_remote'"),
            (vec![("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "1.5")], "OTEL_TRACES_SAMPLER_ARG is '1.5'"),
            (vec![("OTEL_TRACES_EXPORTER", "zipkin")], "OTEL_TRACES_EXPORTER is 'zipkin'"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")], "endpoint is 'collector:4318/v1/traces'"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], "PROTOCOL is 'grpc'"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_HEADERS", "novalue")], "HEADERS is 'novalue'"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_BSP_MAX_QUEUE_SIZE", "0")], "QUEUE_SIZE is '0'"),
        ] {
            let e = settings(&vars).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(names) && e.message().contains("must be"), "{e}");
        }
    }
}
