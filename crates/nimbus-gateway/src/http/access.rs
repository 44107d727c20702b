//! Which IAM action and resource each Lambda and CloudWatch Logs request is, read from
//! its method, path, query and (for `CreateFunction` and the Logs operations) body: the
//! one table the authentication layer consults before any handler runs, so no handler
//! can forget its check. IAM and STS requests name their action in the body and are
//! authorized by their own module (`http::query`).

use axum::http::Method;
use nimbus_types::arn::parse_function_ref;

use super::api::query_map;
use crate::core::access::{Caller, Operation};
use crate::core::ApiError;

/// The operation of a Lambda API request; `None` for a path no operation has (answered
/// as an unknown operation by the router).
pub fn lambda_operation(
    region: &str,
    caller: &Caller,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Option<Operation>, ApiError> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let q = query_map(query);
    let qualifier = q
        .get("Qualifier")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let account = &caller.account_id;
    let function = |name: &str, qualified: bool| -> Result<String, ApiError> {
        let r = parse_function_ref(name)?;
        let mut arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            r.region.as_deref().unwrap_or(region),
            r.account_id.as_deref().unwrap_or(account),
            r.name
        );
        if qualified {
            if let Some(q) = r.qualifier.as_deref().or(qualifier) {
                arn.push(':');
                arn.push_str(q);
            }
        }
        Ok(arn)
    };
    let layer = |name: &str| {
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            format!("arn:aws:lambda:{region}:{account}:layer:{name}")
        }
    };
    let op = |action: &str, resource: String| Ok(Some(Operation::new(action, resource)));
    let m = method.clone();
    match seg.as_slice() {
        ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""] => match m {
            Method::POST => {
                let name = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("FunctionName")?.as_str().map(str::to_string))
                    .unwrap_or_default();
                // A missing or bad name is the handler's validation error to give.
                let resource = function(&name, false).unwrap_or_else(|_| {
                    format!("arn:aws:lambda:{region}:{account}:function:{name}")
                });
                op("lambda:CreateFunction", resource)
            }
            Method::GET => op("lambda:ListFunctions", "*".into()),
            _ => Ok(None),
        },
        ["2015-03-31", "functions", name] => match m {
            Method::GET => op("lambda:GetFunction", function(name, true)?),
            Method::DELETE => op("lambda:DeleteFunction", function(name, true)?),
            _ => Ok(None),
        },
        ["2015-03-31", "functions", name, rest @ ..] => {
            let action = match (&m, rest) {
                (&Method::GET, ["configuration"]) => "lambda:GetFunctionConfiguration",
                (&Method::PUT, ["configuration"]) => "lambda:UpdateFunctionConfiguration",
                (&Method::PUT, ["code"]) => "lambda:UpdateFunctionCode",
                (&Method::POST, ["invocations"]) => "lambda:InvokeFunction",
                (&Method::POST, ["versions"]) => "lambda:PublishVersion",
                (&Method::GET, ["versions"]) => "lambda:ListVersionsByFunction",
                (&Method::POST, ["aliases"]) => "lambda:CreateAlias",
                (&Method::GET, ["aliases"]) => "lambda:ListAliases",
                (&Method::GET, ["aliases", _]) => "lambda:GetAlias",
                (&Method::PUT, ["aliases", _]) => "lambda:UpdateAlias",
                (&Method::DELETE, ["aliases", _]) => "lambda:DeleteAlias",
                (&Method::POST, ["policy"]) => "lambda:AddPermission",
                (&Method::GET, ["policy"]) => "lambda:GetPolicy",
                (&Method::DELETE, ["policy", _]) => "lambda:RemovePermission",
                _ => return Ok(None),
            };
            let qualified = matches!(
                action,
                "lambda:GetFunctionConfiguration"
                    | "lambda:InvokeFunction"
                    | "lambda:AddPermission"
                    | "lambda:GetPolicy"
                    | "lambda:RemovePermission"
            );
            op(action, function(name, qualified)?)
        }
        ["2021-10-31", "functions", name, "url"] => {
            let action = match m {
                Method::POST => "lambda:CreateFunctionUrlConfig",
                Method::GET => "lambda:GetFunctionUrlConfig",
                Method::PUT => "lambda:UpdateFunctionUrlConfig",
                Method::DELETE => "lambda:DeleteFunctionUrlConfig",
                _ => return Ok(None),
            };
            op(action, function(name, true)?)
        }
        ["nimbus", "2026-12-01", "functions", name, "edge-deployments", q] => match m {
            Method::PUT => op(
                "lambda:EnableReplication",
                format!("{}:{q}", function(name, false)?),
            ),
            Method::DELETE => op(
                "lambda:DisableReplication",
                format!("{}:{q}", function(name, false)?),
            ),
            _ => Ok(None),
        },
        ["nimbus", "2026-12-01", "functions", name, "edge-deployments"] => {
            op("lambda:GetFunction", function(name, false)?)
        }
        ["nimbus", "2026-12-01", "edge-deployments"] => op("lambda:ListFunctions", "*".into()),
        ["2021-11-15", "functions", name, "response-streaming-invocations"] => match m {
            Method::POST => op("lambda:InvokeFunction", function(name, true)?),
            _ => Ok(None),
        },
        ["2021-10-31", "functions", name, "urls"] => {
            op("lambda:ListFunctionUrlConfigs", function(name, false)?)
        }
        ["2017-10-31", "functions", name, "concurrency"] => match m {
            Method::PUT => op("lambda:PutFunctionConcurrency", function(name, false)?),
            Method::DELETE => op("lambda:DeleteFunctionConcurrency", function(name, false)?),
            _ => Ok(None),
        },
        ["2019-09-30", "functions", name, "concurrency"] => {
            op("lambda:GetFunctionConcurrency", function(name, false)?)
        }
        ["2016-08-19", "account-settings"] | ["2016-08-19", "account-settings", ""] => {
            op("lambda:GetAccountSettings", "*".into())
        }
        ["2019-09-30", "functions", name, "provisioned-concurrency"] => {
            let action = match m {
                Method::PUT => "lambda:PutProvisionedConcurrencyConfig",
                Method::GET if qualifier.is_some() => "lambda:GetProvisionedConcurrencyConfig",
                Method::GET => "lambda:ListProvisionedConcurrencyConfigs",
                Method::DELETE => "lambda:DeleteProvisionedConcurrencyConfig",
                _ => return Ok(None),
            };
            op(action, function(name, true)?)
        }
        ["2019-09-25", "functions", name, "event-invoke-config"] => {
            let action = match m {
                Method::PUT => "lambda:PutFunctionEventInvokeConfig",
                Method::POST => "lambda:UpdateFunctionEventInvokeConfig",
                Method::GET => "lambda:GetFunctionEventInvokeConfig",
                Method::DELETE => "lambda:DeleteFunctionEventInvokeConfig",
                _ => return Ok(None),
            };
            op(action, function(name, true)?)
        }
        ["2018-10-31", "layers"] => match q.get("find").map(String::as_str) {
            Some("LayerVersion") => op(
                "lambda:GetLayerVersion",
                q.get("Arn").cloned().unwrap_or_else(|| "*".into()),
            ),
            _ => op("lambda:ListLayers", "*".into()),
        },
        ["2018-10-31", "layers", name, "versions"] => match m {
            Method::POST => op("lambda:PublishLayerVersion", layer(name)),
            _ => op("lambda:ListLayerVersions", "*".into()),
        },
        ["2018-10-31", "layers", name, "versions", v] => match m {
            Method::DELETE => op("lambda:DeleteLayerVersion", format!("{}:{v}", layer(name))),
            _ => op("lambda:GetLayerVersion", format!("{}:{v}", layer(name))),
        },
        ["2018-10-31", "layers", name, "versions", v, "policy", ..] => {
            let action = match m {
                Method::POST => "lambda:AddLayerVersionPermission",
                Method::GET => "lambda:GetLayerVersionPolicy",
                _ => "lambda:RemoveLayerVersionPermission",
            };
            op(action, format!("{}:{v}", layer(name)))
        }
        ["2017-03-31", "tags", arn] => {
            let action = match m {
                Method::GET => "lambda:ListTags",
                Method::POST => "lambda:TagResource",
                _ => "lambda:UntagResource",
            };
            op(action, (*arn).to_string())
        }
        _ => Ok(None),
    }
}

/// The operation of a CloudWatch Logs request (`X-Amz-Target: Logs_20140328.Op`): the
/// log group named in the body, or every resource for the listing operations.
pub fn logs_operation(region: &str, caller: &Caller, target: &str, body: &[u8]) -> Operation {
    let op = target.rsplit('.').next().unwrap_or(target);
    let group = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("logGroupName")?.as_str().map(str::to_string));
    let resource = match group {
        Some(g) => format!(
            "arn:aws:logs:{region}:{}:log-group:{g}:*",
            caller.account_id
        ),
        None => "*".into(),
    };
    Operation::new(&format!("logs:{op}"), resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::access::Identity;

    fn caller() -> Caller {
        Caller::new("111111111111", "AKIA", Identity::Root, "/")
    }

    fn op(method: Method, path: &str, query: Option<&str>) -> Option<Operation> {
        lambda_operation("us-east-1", &caller(), &method, path, query, b"").unwrap()
    }

    #[test]
    fn lambda_requests_name_their_action_and_resource() {
        let f = "arn:aws:lambda:us-east-1:111111111111:function:f";
        assert_eq!(
            op(Method::POST, "/2015-03-31/functions/f/invocations", None),
            Some(Operation::new("lambda:InvokeFunction", f))
        );
        assert_eq!(
            op(
                Method::POST,
                "/2015-03-31/functions/f/invocations",
                Some("Qualifier=live")
            ),
            Some(Operation::new("lambda:InvokeFunction", format!("{f}:live")))
        );
        assert_eq!(
            op(
                Method::POST,
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A222222222222%3Afunction%3Ag%3A3/invocations",
                None
            ),
            Some(Operation::new(
                "lambda:InvokeFunction",
                "arn:aws:lambda:us-east-1:222222222222:function:g:3"
            ))
        );
        assert_eq!(
            op(Method::GET, "/2015-03-31/functions/", None),
            Some(Operation::new("lambda:ListFunctions", "*"))
        );
        assert_eq!(
            op(
                Method::PUT,
                "/2015-03-31/functions/f/code",
                Some("Qualifier=1")
            ),
            Some(Operation::new("lambda:UpdateFunctionCode", f))
        );
        assert_eq!(
            op(Method::DELETE, "/2015-03-31/functions/f/policy/sid1", None),
            Some(Operation::new("lambda:RemovePermission", f))
        );
        assert_eq!(op(Method::PATCH, "/2015-03-31/functions/f", None), None);
        assert_eq!(op(Method::GET, "/nope", None), None);
        let created = lambda_operation(
            "us-east-1",
            &caller(),
            &Method::POST,
            "/2015-03-31/functions",
            None,
            br#"{"FunctionName":"new"}"#,
        )
        .unwrap();
        assert_eq!(
            created,
            Some(Operation::new(
                "lambda:CreateFunction",
                "arn:aws:lambda:us-east-1:111111111111:function:new"
            ))
        );
    }

    #[test]
    fn logs_requests_name_their_group() {
        let o = logs_operation(
            "us-east-1",
            &caller(),
            "Logs_20140328.FilterLogEvents",
            br#"{"logGroupName":"/aws/lambda/f"}"#,
        );
        assert_eq!(o.action, "logs:FilterLogEvents");
        assert_eq!(
            o.resource,
            "arn:aws:logs:us-east-1:111111111111:log-group:/aws/lambda/f:*"
        );
    }
}
