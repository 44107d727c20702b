//! Credentials and region the way the AWS CLI finds them, for Nimbus's client commands:
//!
//! * credentials: `--profile` if given; else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
//!   (+ `AWS_SESSION_TOKEN`); else the profile `AWS_PROFILE` (or `default`) in
//!   `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`), then in `~/.aws/config`
//!   (`AWS_CONFIG_FILE`, sections `[default]` / `[profile NAME]`);
//! * region: `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`
//!   in `~/.aws/config`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// Signing credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Sections of an INI file: name → key → value.
type Ini = HashMap<String, HashMap<String, String>>;

fn parse_ini(text: &str) -> Ini {
    let mut out: Ini = HashMap::new();
    let mut section = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            out.entry(name.trim().to_owned()).or_default();
        } else if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(s.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

/// Looks up an environment variable (tests pass their own).
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// The environment and the two files, read once.
pub struct AwsSources {
    env: EnvLookup,
    credentials: Ini,
    config: Ini,
}

impl AwsSources {
    /// The process environment and the files it points to (missing files are empty).
    pub fn from_env() -> Self {
        Self::new(Box::new(|k: &str| {
            std::env::var(k).ok().filter(|v| !v.is_empty())
        }))
    }

    /// Sources from an environment lookup (tests pass their own).
    pub fn new(env: EnvLookup) -> Self {
        let home = env("HOME").map(PathBuf::from).unwrap_or_default();
        let read = |var: &str, default: &str| {
            let path = env(var).map_or_else(|| home.join(".aws").join(default), PathBuf::from);
            parse_ini(&std::fs::read_to_string(path).unwrap_or_default())
        };
        let credentials = read("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config = read("AWS_CONFIG_FILE", "config");
        AwsSources {
            env,
            credentials,
            config,
        }
    }

    fn config_section(&self, profile: &str) -> Option<&HashMap<String, String>> {
        let name = if profile == "default" {
            "default".to_owned()
        } else {
            format!("profile {profile}")
        };
        self.config.get(&name)
    }

    fn profile_credentials(&self, profile: &str) -> Option<AwsCredentials> {
        let from = |s: &HashMap<String, String>| {
            Some(AwsCredentials {
                access_key_id: s.get("aws_access_key_id")?.clone(),
                secret_access_key: s.get("aws_secret_access_key")?.clone(),
                session_token: s.get("aws_session_token").cloned(),
            })
        };
        self.credentials
            .get(profile)
            .and_then(from)
            .or_else(|| self.config_section(profile).and_then(from))
    }

    /// Credentials for `--profile` (if given) or the defaults.
    pub fn credentials(&self, profile_flag: Option<&str>) -> anyhow::Result<AwsCredentials> {
        if let Some(p) = profile_flag {
            if !self.credentials.contains_key(p) && self.config_section(p).is_none() {
                bail!("the config profile ({p}) could not be found");
            }
            return self.profile_credentials(p).with_context(|| {
                format!("profile {p} has no aws_access_key_id / aws_secret_access_key")
            });
        }
        if let (Some(id), Some(secret)) = (
            (self.env)("AWS_ACCESS_KEY_ID"),
            (self.env)("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok(AwsCredentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: (self.env)("AWS_SESSION_TOKEN"),
            });
        }
        let profile = (self.env)("AWS_PROFILE").unwrap_or_else(|| "default".into());
        self.profile_credentials(&profile).with_context(|| {
            format!(
                "unable to locate credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or add profile {profile} to ~/.aws/credentials"
            )
        })
    }

    /// The region for `--region` / `--profile`.
    pub fn region(
        &self,
        region_flag: Option<&str>,
        profile_flag: Option<&str>,
    ) -> anyhow::Result<String> {
        if let Some(r) = region_flag {
            return Ok(r.to_owned());
        }
        if let Some(r) = (self.env)("AWS_REGION").or_else(|| (self.env)("AWS_DEFAULT_REGION")) {
            return Ok(r);
        }
        let profile = profile_flag
            .map(str::to_owned)
            .or_else(|| (self.env)("AWS_PROFILE"))
            .unwrap_or_else(|| "default".into());
        self.config_section(&profile)
            .and_then(|s| s.get("region").cloned())
            .context("you must specify a region: --region, AWS_REGION or AWS_DEFAULT_REGION, or region in ~/.aws/config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(
        vars: &[(&str, &str)],
        credentials: &str,
        config: &str,
    ) -> (tempfile::TempDir, AwsSources) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/credentials"), credentials).unwrap();
        std::fs::write(dir.path().join(".aws/config"), config).unwrap();
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("HOME".into(), dir.path().display().to_string());
        (
            dir,
            AwsSources::new(Box::new(move |k: &str| env.get(k).cloned())),
        )
    }

    const CREDS: &str = "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n# c\n[dev]\naws_access_key_id=K\naws_secret_access_key=S\naws_session_token=T\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile dev]\nregion = us-west-2\n[profile cfgonly]\naws_access_key_id = C\naws_secret_access_key = CS\n";

    #[test]
    fn environment_first_then_profiles() {
        let (_d, s) = sources(
            &[("AWS_ACCESS_KEY_ID", "E"), ("AWS_SECRET_ACCESS_KEY", "ES")],
            CREDS,
            CONFIG,
        );
        assert_eq!(s.credentials(None).unwrap().access_key_id, "E");
        // An explicit --profile wins over the environment, as in the AWS CLI.
        let dev = s.credentials(Some("dev")).unwrap();
        assert_eq!(
            (dev.access_key_id.as_str(), dev.session_token.as_deref()),
            ("K", Some("T"))
        );
        assert_eq!(s.credentials(Some("cfgonly")).unwrap().access_key_id, "C");
        assert!(s
            .credentials(Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("could not be found"));

        let (_d, s) = sources(&[("AWS_PROFILE", "dev")], CREDS, CONFIG);
        assert_eq!(s.credentials(None).unwrap().access_key_id, "K");
        assert_eq!(s.region(None, None).unwrap(), "us-west-2");
        let (_d, s) = sources(&[], CREDS, CONFIG);
        assert_eq!(s.credentials(None).unwrap().access_key_id, "D");
        assert_eq!(s.region(None, None).unwrap(), "eu-west-1");
        assert_eq!(s.region(Some("ap-south-1"), None).unwrap(), "ap-south-1");
    }

    #[test]
    fn region_from_environment_and_clear_errors() {
        let (_d, s) = sources(&[("AWS_DEFAULT_REGION", "us-east-2")], "", "");
        assert_eq!(s.region(None, None).unwrap(), "us-east-2");
        let (_d, s) = sources(
            &[("AWS_REGION", "r1"), ("AWS_DEFAULT_REGION", "r2")],
            "",
            "",
        );
        assert_eq!(s.region(None, None).unwrap(), "r1");
        let (_d, s) = sources(&[], "", "");
        assert!(s
            .region(None, None)
            .unwrap_err()
            .to_string()
            .contains("specify a region"));
        assert!(s
            .credentials(None)
            .unwrap_err()
            .to_string()
            .contains("unable to locate credentials"));
    }
}
