//! Registry credentials: where they come from and how they reach the client.
//!
//! Order: [`RegistryConfig::credentials`](super::RegistryConfig), then the environment
//! (`LAMINA_REGISTRY_USER` + `LAMINA_REGISTRY_PASSWORD`), then docker's `config.json`
//! (`auths`, `credHelpers`, `credsStore`, read by `docker_credential`), else anonymous. The
//! bearer-token dance (`WWW-Authenticate: Bearer realm=...`) is `oci-client`'s; these
//! credentials are what it sends to the token realm, or as HTTP basic auth when the
//! registry asks for that. Secrets never reach a log line or an error message.

use std::fmt;

use oci_client::secrets::RegistryAuth;

use crate::ExportError;

/// Environment variable naming the registry user.
pub const USER_ENV: &str = "LAMINA_REGISTRY_USER";
/// Environment variable holding the registry password or token.
pub const PASSWORD_ENV: &str = "LAMINA_REGISTRY_PASSWORD";

/// Credentials for a registry. `Debug` shows the user name, never a secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// User name and password (or personal access token), sent to the token realm or as
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// A ready bearer token, sent as is.
    Bearer {
        /// The token.
        token: String,
    },
    /// Explicitly anonymous: skip the environment and docker's config.
    Anonymous,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Credentials {
    pub(crate) fn to_auth(&self) -> RegistryAuth {
        match self {
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer { token } => RegistryAuth::Bearer(token.clone()),
            Credentials::Anonymous => RegistryAuth::Anonymous,
        }
    }
}

/// Where the credentials for one registry came from (for logs; no secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Config,
    Environment,
    DockerConfig,
    None,
}

/// The key docker's `config.json` files a registry under.
fn docker_config_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    }
}

/// Resolves the credentials for `registry` (the host actually contacted).
///
/// `env` reads environment variables and `docker` looks a server up in docker's config;
/// both are parameters so tests need not touch the process environment.
pub(crate) fn resolve(
    configured: Option<&Credentials>,
    registry: &str,
    env: impl Fn(&str) -> Option<String>,
    docker: Option<&dyn Fn(&str) -> DockerLookup>,
) -> Result<(Credentials, Source), ExportError> {
    if let Some(c) = configured {
        return Ok((c.clone(), Source::Config));
    }
    if let (Some(username), Some(password)) = (env(USER_ENV), env(PASSWORD_ENV)) {
        return Ok((
            Credentials::Basic { username, password },
            Source::Environment,
        ));
    }
    let Some(docker) = docker else {
        return Ok((Credentials::Anonymous, Source::None));
    };
    let key = docker_config_key(registry);
    let from_docker = |found: DockerLookup| -> Result<_, ExportError> {
        use docker_credential::{CredentialRetrievalError as E, DockerCredential as C};
        match found {
            Ok(C::UsernamePassword(username, password)) => Ok(Some(Credentials::Basic {
                username,
                password,
            })),
            // An identity token is an OAuth2 refresh token, which the token flow here does
            // not exchange; say so instead of failing later with a bare 401.
            Ok(C::IdentityToken(_)) => Err(ExportError::Credentials {
                registry: registry.to_owned(),
                reason: "docker's config.json holds an identity token, which lamina cannot use; set LAMINA_REGISTRY_USER and LAMINA_REGISTRY_PASSWORD instead".into(),
            }),
            Err(E::NoCredentialConfigured | E::ConfigNotFound | E::ConfigReadError) => Ok(None),
            // Not the helper's output: it may echo what it was given.
            Err(E::HelperFailure { helper, .. }) => Err(ExportError::Credentials {
                registry: registry.to_owned(),
                reason: format!(
                    "credential helper docker-credential-{helper} failed; run it by hand or log in again"
                ),
            }),
            Err(e) => Err(ExportError::Credentials {
                registry: registry.to_owned(),
                reason: format!("docker's config.json: {e}; fix or remove the entry"),
            }),
        }
    };
    // Docker files a registry under `host[:port]`, older logins under `https://host[:port]`.
    let mut keys = vec![key.to_owned()];
    if !key.starts_with("https://") {
        keys.push(format!("https://{key}"));
    }
    for candidate in keys {
        if let Some(c) = from_docker(docker(&candidate))? {
            return Ok((c, Source::DockerConfig));
        }
    }
    Ok((Credentials::Anonymous, Source::None))
}

/// What a docker config lookup answers.
pub(crate) type DockerLookup =
    Result<docker_credential::DockerCredential, docker_credential::CredentialRetrievalError>;

/// The credentials to use for `registry`, from the real environment and docker config.
pub(crate) fn credentials_for(
    configured: Option<&Credentials>,
    registry: &str,
    use_docker_config: bool,
) -> Result<Credentials, ExportError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let docker = |server: &str| docker_credential::get_credential(server);
    let docker: Option<&dyn Fn(&str) -> DockerLookup> = if use_docker_config {
        Some(&docker)
    } else {
        None
    };
    let (credentials, source) = resolve(configured, registry, env, docker)?;
    tracing::debug!(registry, ?source, "registry credentials");
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn debug_never_shows_secrets() {
        let basic = Credentials::Basic {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let text = format!("{basic:?}");
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
        let bearer = Credentials::Bearer {
            token: "tok-123".into(),
        };
        assert!(!format!("{bearer:?}").contains("tok-123"));
        assert!(!format!("{:?}", basic.to_auth()).contains("hunter2"));
    }

    #[test]
    fn configured_credentials_win_then_environment() {
        let configured = Credentials::Bearer { token: "t".into() };
        let env = |name: &str| match name {
            USER_ENV => Some("bob".to_owned()),
            PASSWORD_ENV => Some("pw".to_owned()),
            _ => None,
        };
        let (c, s) = resolve(Some(&configured), "r.example", env, None).unwrap();
        assert_eq!((c, s), (configured, Source::Config));
        let (c, s) = resolve(None, "r.example", env, None).unwrap();
        assert_eq!(s, Source::Environment);
        assert_eq!(
            c,
            Credentials::Basic {
                username: "bob".into(),
                password: "pw".into()
            }
        );
        let only_user = |name: &str| (name == USER_ENV).then(|| "bob".to_owned());
        let (c, _) = resolve(None, "r.example", only_user, None).unwrap();
        assert_eq!(c, Credentials::Anonymous);
    }

    #[test]
    fn docker_config_auths_are_read() {
        // "alice:s3cret" in base64, as `docker login` writes it.
        let config = r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#;
        let docker =
            |server: &str| docker_credential::get_credential_from_reader(config.as_bytes(), server);
        let (c, s) = resolve(None, "127.0.0.1:5000", no_env, Some(&docker)).unwrap();
        assert_eq!(s, Source::DockerConfig);
        assert_eq!(
            c,
            Credentials::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            }
        );
        let (c, s) = resolve(None, "other:5000", no_env, Some(&docker)).unwrap();
        assert_eq!((c, s), (Credentials::Anonymous, Source::None));
    }

    #[test]
    fn docker_hub_uses_its_legacy_key() {
        let config = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcmV0"}}}"#;
        let docker =
            |server: &str| docker_credential::get_credential_from_reader(config.as_bytes(), server);
        let (c, _) = resolve(None, "index.docker.io", no_env, Some(&docker)).unwrap();
        assert!(matches!(c, Credentials::Basic { ref username, .. } if username == "alice"));
    }

    #[test]
    fn a_failing_helper_is_named_without_its_output() {
        let docker = |_: &str| -> DockerLookup {
            Err(docker_credential::CredentialRetrievalError::HelperFailure {
                helper: "pass".into(),
                stdout: "secret-output".into(),
                stderr: String::new(),
            })
        };
        let err = resolve(None, "r.example", no_env, Some(&docker)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("docker-credential-pass"), "{text}");
        assert!(!text.contains("secret-output"), "{text}");
    }
}
