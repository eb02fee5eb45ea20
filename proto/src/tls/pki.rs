//! A throwaway certificate authority for TLS tests, made with the openssl CLI exactly as
//! docs/security.md tells operators to: an EC P-256 CA, and leaf certificates valid for
//! 127.0.0.1 and localhost, usable as server and client certificates.
//!
//! For tests only: built with `cfg(test)` or the `test-pki` feature (the end-to-end tests).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A new directory with CA `ca` (ca.crt, ca.key).
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.ca("ca");
        pki
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path as a string, for command lines.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl must be installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Another CA: `name.crt`, `name.key`.
    pub fn ca(&self, name: &str) {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "30",
            "-subj",
            &format!("/CN={name}"),
        ]);
    }

    /// `name.crt`, `name.key`: subject CN `cn`, signed by CA `ca`, valid `days` (0: expired at
    /// once) for 127.0.0.1 and localhost.
    pub fn leaf(&self, ca: &str, name: &str, cn: &str, days: u32) {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        std::fs::write(
            self.path("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("extension file");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            &days.to_string(),
            "-extfile",
            "leaf.ext",
        ]);
    }

    /// The subject of the certificate the server at `addr` presents now (openssl s_client).
    pub fn served_subject(&self, addr: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {addr} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -subject",
                self.arg("ca.crt")
            ))
            .output()
            .expect("openssl s_client");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
