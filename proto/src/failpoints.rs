//! Named crash points for tests (DESIGN §6), on the `fail` crate.
//!
//! Built only with the `failpoints` feature; without it [`hit`] is an empty
//! inline function and no service exists. A failpoint is armed at start by
//! the `FAILPOINTS` environment variable (`name=actions;name=actions`) or at
//! run time through the `Failpoints` gRPC service, in the `fail` crate's
//! action syntax. tandem's points act on `return(...)` with a
//! comma-separated list of steps, run in order:
//!
//! - `crash`: abort the process at once (no cleanup, like `kill -9`);
//! - `error`: make the step fail as if its I/O had failed;
//! - `delay:MS`: wait MS milliseconds.
//!
//! e.g. `FAILPOINTS='coordinator::after_log=return(crash)'`, or
//! `participant::before_commit=1*return(delay:300,error)` (only once).
//! Plain `sleep(MS)`, `panic` and `off` work as in the `fail` crate.

/// Evaluates failpoint `name`: `Err` when it is armed to fail the step.
#[cfg(feature = "failpoints")]
pub async fn hit(name: &'static str) -> Result<(), String> {
    let Some(steps) = fail::eval(name, |arg| arg.unwrap_or_default()) else {
        return Ok(());
    };
    for step in steps.split(',').map(str::trim) {
        if let Some(ms) = step.strip_prefix("delay:") {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        } else {
            apply(name, step)?;
        }
    }
    Ok(())
}

/// [`hit`] for code outside the async runtime (a delay blocks the thread).
#[cfg(feature = "failpoints")]
pub fn hit_blocking(name: &'static str) -> Result<(), String> {
    let Some(steps) = fail::eval(name, |arg| arg.unwrap_or_default()) else {
        return Ok(());
    };
    for step in steps.split(',').map(str::trim) {
        if let Some(ms) = step.strip_prefix("delay:") {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        } else {
            apply(name, step)?;
        }
    }
    Ok(())
}

#[cfg(feature = "failpoints")]
fn apply(name: &str, step: &str) -> Result<(), String> {
    match step {
        "crash" => {
            eprintln!("failpoint {name}: crashing the process");
            std::process::abort();
        }
        "error" => Err(format!("failpoint {name} injected an error")),
        "" => Ok(()),
        other => Err(format!(
            "failpoint {name}: unknown step {other:?} (injected as an error)"
        )),
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hit(_name: &'static str) -> Result<(), String> {
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit_blocking(_name: &'static str) -> Result<(), String> {
    Ok(())
}

/// Arms the failpoints named in `FAILPOINTS` (`name=actions;...`).
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(());
    };
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, actions) = item
            .split_once('=')
            .ok_or_else(|| format!("FAILPOINTS: {item:?} is not name=actions"))?;
        fail::cfg(name.trim(), actions.trim()).map_err(|e| format!("FAILPOINTS: {name}: {e}"))?;
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
pub fn arm_from_env() -> Result<(), String> {
    match std::env::var("FAILPOINTS") {
        Ok(spec) if !spec.trim().is_empty() => {
            Err("FAILPOINTS is set but this binary was built without the `failpoints` feature".to_owned())
        }
        _ => Ok(()),
    }
}

/// The `Failpoints` admin service.
#[cfg(feature = "failpoints")]
pub fn service() -> crate::v1::failpoints_server::FailpointsServer<Service> {
    crate::v1::failpoints_server::FailpointsServer::new(Service)
}

#[cfg(feature = "failpoints")]
#[derive(Debug, Default)]
pub struct Service;

#[cfg(feature = "failpoints")]
#[tonic::async_trait]
impl crate::v1::failpoints_server::Failpoints for Service {
    async fn configure(
        &self,
        request: tonic::Request<crate::v1::ConfigureFailpointRequest>,
    ) -> Result<tonic::Response<crate::v1::ConfigureFailpointResponse>, tonic::Status> {
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(tonic::Status::invalid_argument("failpoint name is empty"));
        }
        if req.actions.is_empty() {
            fail::remove(&req.name);
        } else {
            fail::cfg(req.name.clone(), &req.actions)
                .map_err(|e| tonic::Status::invalid_argument(format!("failpoint {}: {e}", req.name)))?;
        }
        let armed = fail::list().into_iter().map(|(n, a)| format!("{n}={a}")).collect();
        Ok(tonic::Response::new(crate::v1::ConfigureFailpointResponse { armed }))
    }
}
