//! What `spillway bench streams` runs against: three simulated US regions of one model in this
//! process, slow enough that a stream lasts `--stream-secs` and large enough that none
//! throttles, and the gateway configuration in front of them; and the descriptor limits all
//! of it needs.
use anyhow::Context as _;
use spillway_gateway::Config;
use spillway_sim::{SimConfig, SimHandle};

use super::{API_KEY, MODEL, REGIONS, StreamsArgs};

/// Slots and queue of each simulator: more than any run asks for, so that none throttles.
const SIM_SLOTS: u32 = 20_000;
/// Descriptors this process needs besides one per stream (the simulators' side of each
/// upstream connection): listeners, the gateway child's pipes, the runtime, the warm-up.
const OWN_SPARE: u64 = 1_024;
/// Descriptors a client process needs besides its streams.
pub const WORKER_SPARE: u64 = 64;

/// The simulators, one per US region.
pub async fn start_sims(args: &StreamsArgs) -> anyhow::Result<Vec<SimHandle>> {
    let mut sims = Vec::new();
    for region in REGIONS {
        let cfg = SimConfig {
            region: region.to_string(),
            concurrency: SIM_SLOTS,
            queue_limit: SIM_SLOTS,
            prefill_tokens_per_sec: f64::INFINITY,
            decode_tokens_per_sec: args.max_tokens as f64 / args.stream_secs,
            default_max_tokens: args.max_tokens,
            ..SimConfig::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        sims.push(spillway_sim::spawn(cfg, listener).await?);
    }
    Ok(sims)
}

/// The gateway's configuration: the three regions, the model, a deployment on each simulator,
/// the bench's tenant, a listener in us-east-1 and the admin listener (both on free ports;
/// `spillway serve --listen/--admin` sets them again), and `max_connections` if given.
pub fn config_text(sims: &[SimHandle], max_connections: Option<usize>) -> anyhow::Result<String> {
    let hash: String = spillway_gateway::config::sha256(API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = String::new();
    if let Some(n) = max_connections {
        out.push_str(&format!("[server]\nmax_connections = {n}\n\n"));
    }
    for r in REGIONS {
        out.push_str(&format!(
            "[[regions]]\nname = \"{r}\"\ngeography = \"us\"\n\n"
        ));
    }
    out.push_str(&format!("[[models]]\nid = \"{MODEL}\"\n\n"));
    for sim in sims {
        out.push_str(&format!(
            "[[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{}\"\nmax_in_flight = 1000000\n\
             upstream = {{ kind = \"sim\", base_url = \"{}\" }}\n\n",
            sim.region(),
            sim.base_url()
        ));
    }
    out.push_str(&format!(
        "[[tenants]]\nname = \"bench-streams\"\napi_keys = [{{ sha256 = \"{hash}\" }}]\n\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{}\"\n\n\
         [admin]\nbind = \"127.0.0.1:0\"\n",
        REGIONS[0]
    ));
    let cfg = Config::parse(&out, "<bench streams>").context("the generated configuration")?;
    anyhow::ensure!(
        cfg.deployments.len() == REGIONS.len() && cfg.embedded_sims().count() == 0,
        "the generated configuration does not put every deployment on a simulator"
    );
    Ok(out)
}

/// The descriptor limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// This process's hard limit (its soft one is raised to it); also the client processes'.
    pub hard: u64,
    /// The gateway's (`prlimit --nofile=N:N`).
    pub gateway: u64,
}

/// Raises this process's soft descriptor limit to its hard one, and the hard one to
/// `--gateway-nofile` if that is above it (which needs `CAP_SYS_RESOURCE`; `prlimit` could not
/// give the gateway more than that either). Fails, saying what to change, when a limit is too
/// low for the run.
pub fn raise_limits(args: &StreamsArgs) -> anyhow::Result<Limits> {
    use rlimit::Resource;
    let (_, mut hard) = rlimit::getrlimit(Resource::NOFILE)?;
    if args.gateway_nofile > hard {
        rlimit::setrlimit(Resource::NOFILE, hard, args.gateway_nofile).map_err(|e| {
            anyhow::anyhow!(
                "--gateway-nofile {} is above this machine's hard descriptor limit, {hard}, and \
                 this process may not raise it ({e}; it needs CAP_SYS_RESOURCE, or `ulimit -Hn` \
                 raised before it starts): give --gateway-nofile {hard} or less ({} streams take \
                 about {} descriptors in the gateway, one per client and one per upstream \
                 connection)",
                args.gateway_nofile,
                args.streams,
                gateway_needs(args.streams)
            )
        })?;
        hard = args.gateway_nofile;
    }
    let soft = rlimit::increase_nofile_limit(u64::MAX)?;
    let needed = args.streams as u64 + OWN_SPARE;
    anyhow::ensure!(
        soft >= needed,
        "this process may open {soft} files, and the simulators here hold one per stream: \
         {} streams need {needed}; raise the limit (ulimit -n) or lower --streams",
        args.streams
    );
    let per = args.per_worker.min(args.streams) as u64;
    anyhow::ensure!(
        hard >= per + WORKER_SPARE,
        "a client process may open {hard} files, too few for {per} streams: lower --per-worker"
    );
    if args.gateway_nofile < gateway_needs(args.streams) {
        eprintln!(
            "spillway bench streams: warning: the gateway's descriptor limit ({}) is below the \
             about {} that {} streams take (one per client and one per upstream connection, \
             plus its own): expect the last streams to fail",
            args.gateway_nofile,
            gateway_needs(args.streams),
            args.streams
        );
    }
    Ok(Limits {
        hard,
        gateway: args.gateway_nofile,
    })
}

/// Descriptors the gateway needs for `streams` streams: a client and an upstream connection
/// each, and its own (listeners, epoll, the runtime, pooled connections) besides.
pub fn gateway_needs(streams: usize) -> u64 {
    2 * streams as u64 + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_configuration_is_valid_and_on_the_simulators() {
        let args = super::super::tests::args(&["--streams", "10", "--stream-secs", "2"]);
        let sims = start_sims(&args).await.expect("simulators");
        let text = config_text(&sims, Some(123)).expect("valid");
        let cfg = Config::parse(&text, "<test>").expect("valid");
        assert_eq!(cfg.edge.max_connections, Some(123));
        assert_eq!(cfg.listeners.len(), 1);
        for (dep, sim) in cfg.deployments.iter().zip(&sims) {
            assert_eq!(cfg.region_name(dep.region), sim.region());
        }
        assert_eq!(sims[0].config().decode_tokens_per_sec, 15.0);
        for s in &sims {
            s.shutdown();
        }
    }
}
