//! `[settings.remote_cache]`: where a shared cache lives, given as a URL.
//! Parsing is pure (no network, no environment): the config check reports a
//! bad URL with its span, and `cache::remote` turns a parsed one into a
//! storage client, reading credentials from the environment only.

/// A remote cache setting: the URL (config or `HOTPASS_REMOTE_CACHE`) and
/// whether this machine may write to it (`None`: only when `CI=true`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RemoteCache {
    pub url: String,
    pub read_only: Option<bool>,
}

/// The storage a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `s3://bucket/prefix` (endpoint and region from `?endpoint=&region=`
    /// or the AWS environment variables).
    S3 { bucket: String },
    /// `webdav+http://host:port/path`, `webdav+https://…` (or `webdav://`,
    /// meaning https).
    Webdav { endpoint: String },
    /// `redis://host:port/DB` (or `rediss://` for TLS).
    Redis { endpoint: String, db: i64 },
    /// `gcs://bucket/prefix`.
    Gcs { bucket: String },
    /// `azblob://container/prefix` (account from the environment).
    Azblob { container: String },
    /// `ghac://prefix`: the GitHub Actions cache service (untested here).
    Ghac,
}

/// A parsed remote cache URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub backend: Backend,
    /// The folder (key prefix) inside the storage, `/`-rooted.
    pub root: String,
    /// `?name=value` options that are not secrets (`endpoint`, `region`).
    pub options: Vec<(String, String)>,
}

/// Options a URL may carry; anything else (a secret above all) is refused.
const OPTIONS: &[&str] = &["endpoint", "region"];

impl RemoteUrl {
    /// Parses `url`; the error says what is wrong and how to write it.
    pub fn parse(url: &str) -> Result<RemoteUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "`{url}` is not a URL: write s3://bucket/prefix, webdav+http://host:port/path, redis://host:port/0, gcs://bucket/prefix or azblob://container/prefix"
            ));
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(
                "credentials do not belong in the URL: hotpass reads them from the environment only (see docs/remote-cache.md)".into(),
            );
        }
        let mut options = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !OPTIONS.contains(&k) {
                return Err(format!(
                    "unknown URL option `{k}`: only endpoint and region may be given in the URL; credentials come from the environment"
                ));
            }
            options.push((k.to_owned(), v.to_owned()));
        }
        let root = format!("/{}", path.trim_matches('/'));
        let need = |what: &str| -> Result<String, String> {
            if authority.is_empty() {
                Err(format!("`{url}` names no {what}"))
            } else {
                Ok(authority.to_owned())
            }
        };
        let backend = match scheme {
            "s3" => Backend::S3 {
                bucket: need("bucket")?,
            },
            "webdav+http" | "webdav+https" | "webdav" => {
                let proto = if scheme == "webdav+http" {
                    "http"
                } else {
                    "https"
                };
                Backend::Webdav {
                    endpoint: format!("{proto}://{}", need("host")?),
                }
            }
            "redis" | "rediss" => {
                let db = match path.trim_matches('/') {
                    "" => 0,
                    n => n.parse().map_err(|_| {
                        format!("`{n}` is not a database number: write redis://host:port/0")
                    })?,
                };
                return Ok(RemoteUrl {
                    backend: Backend::Redis {
                        endpoint: format!("{scheme}://{}", need("host")?),
                        db,
                    },
                    root: "/".into(),
                    options,
                });
            }
            "gcs" | "gs" => Backend::Gcs {
                bucket: need("bucket")?,
            },
            "azblob" => Backend::Azblob {
                container: need("container")?,
            },
            "ghac" => {
                return Ok(RemoteUrl {
                    backend: Backend::Ghac,
                    root: format!("/{}", rest.trim_matches('/')),
                    options,
                });
            }
            other => {
                return Err(format!(
                    "unknown remote cache scheme `{other}`: use s3, webdav+http, webdav+https, redis, gcs, azblob or ghac"
                ));
            }
        };
        Ok(RemoteUrl {
            backend,
            root,
            options,
        })
    }

    /// The value of URL option `name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend_and_refuse_credentials() {
        let u = RemoteUrl::parse("s3://team-cache/hotpass?endpoint=http://127.0.0.1:9000").unwrap();
        assert_eq!(
            u.backend,
            Backend::S3 {
                bucket: "team-cache".into()
            }
        );
        assert_eq!(u.root, "/hotpass");
        assert_eq!(u.option("endpoint"), Some("http://127.0.0.1:9000"));
        let u = RemoteUrl::parse("webdav+http://127.0.0.1:8080/cache/").unwrap();
        assert_eq!(
            u.backend,
            Backend::Webdav {
                endpoint: "http://127.0.0.1:8080".into()
            }
        );
        assert_eq!(u.root, "/cache");
        let u = RemoteUrl::parse("redis://127.0.0.1:6379/2").unwrap();
        assert_eq!(
            u.backend,
            Backend::Redis {
                endpoint: "redis://127.0.0.1:6379".into(),
                db: 2
            }
        );
        assert!(RemoteUrl::parse("s3://key:secret@bucket/x").is_err());
        assert!(RemoteUrl::parse("s3://bucket/x?secret_access_key=y").is_err());
        assert!(RemoteUrl::parse("ftp://host/x").is_err());
        assert!(RemoteUrl::parse("redis://host/x").is_err());
        assert!(RemoteUrl::parse("s3:///x").is_err());
        assert!(RemoteUrl::parse("cache").is_err());
    }
}
