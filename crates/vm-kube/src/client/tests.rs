use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A kubeconfig with two clusters, two users and one context (c1, alice), in a temp dir.
struct Fixture {
    dir: tempfile::TempDir,
}

const KUBECONFIG: &str = r"apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://c1.example:6443
    insecure-skip-tls-verify: true
- name: c2
  cluster:
    server: https://c2.example:6443
    tls-server-name: kube.c2.example
contexts:
- name: ctx
  context: {cluster: c1, user: alice, namespace: shop}
current-context: ctx
users:
- name: alice
  user:
    username: alice
    password: secret
    as: someone
    as-groups: [old-group]
- name: bob
  user:
    username: bob
    password: secret
";

/// Bytes that kube-rs reads as one certificate (it does not decode the X.509 inside).
const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), KUBECONFIG).unwrap();
        std::fs::write(dir.path().join("ca.pem"), PEM).unwrap();
        std::fs::write(dir.path().join("not-pem.txt"), "hello").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: Some(self.path("config")),
            ..ConnectOptions::default()
        }
    }
}

fn config_of(opts: &ConnectOptions) -> Result<Config, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(config(opts))
        .map(|(config, _)| config)
}

fn error_of(opts: &ConnectOptions) -> String {
    config_of(opts).err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn without_flags_the_context_decides() {
    let fixture = Fixture::new();
    let config = config_of(&fixture.options()).unwrap();
    assert_eq!(config.cluster_url.to_string(), "https://c1.example:6443/");
    assert_eq!(config.default_namespace, "shop");
    assert!(config.accept_invalid_certs, "the kubeconfig's own setting");
    assert_eq!(config.auth_info.username.as_deref(), Some("alice"));
    assert_eq!(config.auth_info.impersonate.as_deref(), Some("someone"));
    assert_eq!(config.read_timeout, None);
}

#[test]
fn cluster_and_user_pick_the_kubeconfig_entries() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        cluster: Some("c2".into()),
        user: Some("bob".into()),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(config.cluster_url.to_string(), "https://c2.example:6443/");
    assert_eq!(config.tls_server_name.as_deref(), Some("kube.c2.example"));
    assert!(!config.accept_invalid_certs);
    assert_eq!(config.auth_info.username.as_deref(), Some("bob"));
    assert_eq!(config.default_namespace, "shop", "still the context's namespace");
}

#[test]
fn an_unknown_cluster_or_user_is_refused_with_the_known_ones() {
    let fixture = Fixture::new();
    let err = error_of(&ConnectOptions {
        user: Some("carol".into()),
        ..fixture.options()
    });
    assert!(
        err.contains("user \"carol\" (--user) does not exist (users: alice, bob)"),
        "{err}"
    );
    let err = error_of(&ConnectOptions {
        cluster: Some("c3".into()),
        ..fixture.options()
    });
    assert!(
        err.contains("cluster \"c3\" (--cluster) does not exist (clusters: c1, c2)"),
        "{err}"
    );
}

#[test]
fn server_replaces_the_url_and_defaults_to_https() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        server: Some("10.0.0.9:6443".into()),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(config.cluster_url.to_string(), "https://10.0.0.9:6443/");
    for bad in ["ftp://x", "https://", "http://a b", ""] {
        let err = error_of(&ConnectOptions {
            server: Some(bad.into()),
            ..fixture.options()
        });
        assert!(
            err.starts_with(&format!("--server {bad}: not the URL")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn certificate_authority_replaces_the_ca_and_the_insecure_setting() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        certificate_authority: Some(fixture.path("ca.pem")),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(config.root_cert, Some(vec![vec![0, 0, 0]]));
    assert!(!config.accept_invalid_certs, "c1 says insecure; the CA file wins");
}

#[test]
fn an_unusable_certificate_authority_is_named() {
    let fixture = Fixture::new();
    for (file, why) in [
        ("missing.pem", "cannot be read: no such file"),
        ("not-pem.txt", "holds no PEM certificate"),
        ("", "cannot be read: it is a directory"),
    ] {
        let path = fixture.path(file);
        let err = error_of(&ConnectOptions {
            certificate_authority: Some(path.clone()),
            ..fixture.options()
        });
        assert!(
            err.starts_with(&format!("--certificate-authority {}: {why}", path.display())),
            "{err}"
        );
    }
}

#[test]
fn insecure_skips_verification_only_when_asked_and_never_with_a_ca() {
    let fixture = Fixture::new();
    let bob_on_c2 = ConnectOptions {
        cluster: Some("c2".into()),
        ..fixture.options()
    };
    assert!(!config_of(&bob_on_c2).unwrap().accept_invalid_certs);
    let config = config_of(&ConnectOptions {
        insecure_skip_tls_verify: true,
        ..bob_on_c2.clone()
    })
    .unwrap();
    assert!(config.accept_invalid_certs);
    assert_eq!(config.root_cert, None);
    let err = error_of(&ConnectOptions {
        insecure_skip_tls_verify: true,
        certificate_authority: Some(fixture.path("ca.pem")),
        ..bob_on_c2
    });
    assert!(
        err.contains("--insecure-skip-tls-verify with --certificate-authority")
            && err.contains("give one of them"),
        "{err}"
    );
}

#[test]
fn tls_server_name_is_the_name_verified() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        tls_server_name: Some("api.internal".into()),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(config.tls_server_name.as_deref(), Some("api.internal"));
}

#[test]
fn token_replaces_the_users_credentials() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        token: Some("t0k3n".into()),
        ..fixture.options()
    })
    .unwrap();
    assert!(config.auth_info.token.is_some());
    assert_eq!(config.auth_info.username, None);
    assert!(config.auth_info.password.is_none());
    assert_eq!(
        config.auth_info.impersonate.as_deref(),
        Some("someone"),
        "impersonation is not a credential"
    );
    let err = error_of(&ConnectOptions {
        token: Some(" ".into()),
        ..fixture.options()
    });
    assert_eq!(err, "--token: must not be empty");
}

#[test]
fn as_and_as_group_replace_the_entrys_impersonation() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        impersonate: Some("jane".into()),
        impersonate_groups: vec!["ops".into(), "break-glass".into()],
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(config.auth_info.impersonate.as_deref(), Some("jane"));
    assert_eq!(
        config.auth_info.impersonate_groups,
        Some(vec!["ops".to_string(), "break-glass".to_string()])
    );
    let config = config_of(&ConnectOptions {
        impersonate: Some("jane".into()),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(
        config.auth_info.impersonate_groups, None,
        "the entry's as-groups are not kept"
    );
}

#[test]
fn the_acting_identity_is_the_flags_or_else_the_kubeconfigs_impersonation() {
    let fixture = Fixture::new();
    let acting = |opts: &ConnectOptions| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(acting_as(opts))
    };
    // alice's entry says `as: someone`, `as-groups: [old-group]`.
    let from_entry = Impersonation {
        user: "someone".into(),
        groups: vec!["old-group".into()],
    };
    assert_eq!(acting(&fixture.options()), Some(from_entry));
    let jane = ConnectOptions {
        impersonate: Some("jane".into()),
        ..fixture.options()
    };
    assert_eq!(
        acting(&jane),
        Some(Impersonation {
            user: "jane".into(),
            groups: vec![],
        })
    );
    let bob = ConnectOptions {
        user: Some("bob".into()),
        ..fixture.options()
    };
    assert_eq!(acting(&bob), None, "bob's entry impersonates nobody");
}

#[test]
fn as_group_needs_as() {
    let fixture = Fixture::new();
    let err = error_of(&ConnectOptions {
        impersonate_groups: vec!["ops".into()],
        ..fixture.options()
    });
    assert_eq!(
        err,
        "--as-group ops: impersonating groups needs a user to impersonate: add --as USER"
    );
}

#[test]
fn request_timeout_bounds_each_request() {
    let fixture = Fixture::new();
    let config = config_of(&ConnectOptions {
        request_timeout: Some(Duration::from_secs(5)),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(config.read_timeout, Some(Duration::from_secs(5)));
    assert!(config.reset_reader_on_write);
    assert_eq!(config.connect_timeout, Some(Duration::from_secs(5)));
    assert_eq!(config.write_timeout, Some(Duration::from_secs(5)));
    let long = config_of(&ConnectOptions {
        request_timeout: Some(Duration::from_secs(3600)),
        ..fixture.options()
    })
    .unwrap();
    assert_eq!(long.read_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(
        long.connect_timeout,
        Some(Duration::from_secs(30)),
        "kube-rs's default stays"
    );
}

#[test]
fn impersonation_is_named_as_kubectl_flags() {
    let who = Impersonation {
        user: "system:serviceaccount:ops:bot".into(),
        groups: vec!["break glass".into()],
    };
    assert_eq!(
        who.to_string(),
        "user system:serviceaccount:ops:bot in group break glass"
    );
    assert_eq!(
        who.flags(),
        " --as system:serviceaccount:ops:bot --as-group 'break glass'"
    );
}

/// A one-shot HTTP server on 127.0.0.1 that answers every request with `body` and hands
/// back the head of each request it got.
fn recording_server(body: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heads, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut request_body = vec![0; length];
            let _ = reader.read_exact(&mut request_body);
            let _ = heads.send(head);
            let _ = write!(
                stream,
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, received)
}

#[test]
fn requests_carry_the_token_and_the_impersonation_headers() {
    let (url, heads) = recording_server(
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":false}}"#,
    );
    let fixture = Fixture::new();
    let opts = ConnectOptions {
        server: Some(url),
        token: Some("t0k3n".into()),
        impersonate: Some("jane".into()),
        impersonate_groups: vec!["ops".into(), "break-glass".into()],
        request_timeout: Some(Duration::from_secs(10)),
        ..fixture.options()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let missing = runtime.block_on(async {
        let connection = connect(&opts).await.unwrap();
        let needed = crate::access::edit_node();
        crate::access::check(&connection.client, &needed[..1]).await
    });
    assert_eq!(missing.unwrap_err().0.len(), 1, "the server said no");
    let head = heads
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.starts_with("post /apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
        "{head}"
    );
    assert!(head.contains("\r\nauthorization: bearer t0k3n\r\n"), "{head}");
    assert!(head.contains("\r\nimpersonate-user: jane\r\n"), "{head}");
    assert!(
        head.contains("\r\nimpersonate-group: ops\r\n")
            && head.contains("\r\nimpersonate-group: break-glass\r\n"),
        "{head}"
    );
}
