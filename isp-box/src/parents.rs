//! The box's parents, in order: its peer boxes, then the nearest edges (asked from the host
//! locator from the box's own location, refreshed every `parents_refresh_secs`), then the
//! origin (`node.parents`). When the locator cannot be asked the last edges it named stay.

use std::time::Duration;

use edge_node::Engine;
use edge_node::upstream::Parent;
use serde::Deserialize;
use telemetry::Shutdown;

use crate::config::Config;

#[derive(Debug, Deserialize)]
struct Located {
    candidates: Vec<Candidate>,
}

#[derive(Debug, Deserialize)]
struct Candidate {
    node: String,
    kind: String,
    url: String,
}

fn parent(base: &str) -> Parent {
    Parent {
        base: base.trim_end_matches('/').to_owned(),
    }
}

/// The chain from its three parts.
pub fn chain(peers: &[String], edges: &[String], origins: &[String]) -> Vec<Parent> {
    let mut chain: Vec<Parent> = Vec::new();
    for base in peers.iter().chain(edges).chain(origins) {
        let next = parent(base);
        if !chain.contains(&next) {
            chain.push(next);
        }
    }
    chain
}

/// Asks the locator for the nearest edges to the box (their HTTP/1.1 URLs, best first).
async fn nearest_edges(http: &reqwest::Client, config: &Config) -> anyhow::Result<Vec<String>> {
    let Some(locator) = &config.node.locator else {
        return Ok(Vec::new());
    };
    let mut query = vec![
        ("track", "isp-box-fill".to_owned()),
        ("protocol", "h1".to_owned()),
    ];
    if let (Some(lat), Some(lon)) = (locator.lat, locator.lon) {
        query.push(("lat", lat.to_string()));
        query.push(("lon", lon.to_string()));
    }
    let response = http
        .get(format!("{}/v1/locate", locator.url.trim_end_matches('/')))
        .query(&query)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("the host locator answered {status}");
    }
    let located: Located = response.json().await?;
    Ok(located
        .candidates
        .into_iter()
        .filter(|candidate| {
            candidate.kind == "edge"
                && candidate.node != config.node.id
                && !candidate.url.is_empty()
        })
        .map(|candidate| candidate.url)
        .take(config.nearest_edges)
        .collect())
}

/// Keeps the engine's parents current until `shutdown`.
pub async fn keep_current(engine: Engine, config: Config, shutdown: Shutdown) {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    let every = Duration::from_secs(config.parents_refresh_secs);
    let mut edges: Vec<String> = Vec::new();
    loop {
        if config.nearest_edges > 0 {
            match nearest_edges(&http, &config).await {
                Ok(found) => edges = found,
                Err(error) => {
                    tracing::warn!(message = "Nearest edges not asked; keeping the last ones.", error = %error);
                }
            }
        }
        let next = chain(&config.peers, &edges, &config.node.parents);
        if next != engine.upstream().parents() {
            tracing::info!(message = "Parents changed.", parents = ?next.iter().map(|p| p.base.as_str()).collect::<Vec<_>>());
            engine.upstream().set_parents(next);
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_come_first_then_edges_then_the_origin_without_repeats() {
        let chain = chain(
            &["http://peer-a/".to_owned()],
            &["http://edge-1".to_owned(), "http://peer-a".to_owned()],
            &["http://origin".to_owned()],
        );
        let bases: Vec<&str> = chain.iter().map(|p| p.base.as_str()).collect();
        assert_eq!(bases, ["http://peer-a", "http://edge-1", "http://origin"]);
    }
}
