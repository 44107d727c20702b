//! `nimbus edge deploy|list|remove`: a function's published versions and aliases
//! associated with edge locations, through a gateway's API (signed like any AWS call;
//! see docs/operations.md, "Edge deployments", for the API itself).

use anyhow::bail;
use serde_json::{json, Value};

use crate::api_client::Gateway;
use crate::aws_config::AwsSources;
use crate::cli::{ApiArgs, EdgeCommand};

/// Where the API lives (Nimbus's own, beside Lambda's paths).
pub const API_PREFIX: &str = "/nimbus/2026-12-01";

fn client(api: &ApiArgs) -> anyhow::Result<Gateway> {
    let sources = AwsSources::from_env();
    let credentials = sources.credentials(api.profile.as_deref())?;
    let region = sources.region(api.region.as_deref(), api.profile.as_deref())?;
    Gateway::new(&api.endpoint, credentials, region)
}

fn path(function: &str, qualifier: &str) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "{API_PREFIX}/functions/{}/edge-deployments/{}",
        enc(function),
        enc(qualifier)
    )
}

pub async fn run(cmd: EdgeCommand) -> anyhow::Result<()> {
    match cmd {
        EdgeCommand::Deploy {
            function,
            qualifier,
            locations,
            api,
        } => {
            let v = change(&api, "PUT", &function, &qualifier, &locations).await?;
            print_deployment(&v);
        }
        EdgeCommand::List { api } => {
            let gw = client(&api)?;
            let path = format!("{API_PREFIX}/edge-deployments");
            match gw.send("lambda", "GET", &path, None, vec![]).await? {
                Ok(v) => {
                    for d in v["EdgeDeployments"].as_array().into_iter().flatten() {
                        print_deployment(d);
                    }
                }
                Err(e) => bail!("{e}"),
            }
        }
        EdgeCommand::Remove {
            function,
            qualifier,
            locations,
            api,
        } => {
            change(&api, "DELETE", &function, &qualifier, &locations).await?;
            println!("removed {function}:{qualifier} from the edge");
        }
    }
    Ok(())
}

/// Deploys (`PUT`) or removes (`DELETE`) `function:qualifier` at `locations`.
async fn change(
    api: &ApiArgs,
    method: &str,
    function: &str,
    qualifier: &str,
    locations: &[String],
) -> anyhow::Result<Value> {
    let body = json!({ "Locations": locations }).to_string().into_bytes();
    match client(api)?
        .send("lambda", method, &path(function, qualifier), None, body)
        .await?
    {
        Ok(v) => Ok(v),
        Err(e) => bail!("{e}"),
    }
}

fn print_deployment(d: &Value) {
    let locations: Vec<&str> = d["Locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{}:{} (version {}) at {}",
        d["FunctionName"].as_str().unwrap_or(""),
        d["Qualifier"].as_str().unwrap_or(""),
        d["Version"].as_str().unwrap_or("?"),
        locations.join(", ")
    );
}
