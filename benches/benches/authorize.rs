//! The ACL check on every client call (`Security::authorize`, `--authorizer acl`): what a
//! produce or fetch pays before it touches the log.
//!
//! Workload: 1,000 ACL entries for 100 users (10 each: literal and prefixed topic entries,
//! allows and denies) plus 5 for `User:*`, loaded into a broker's cache from an embedded
//! store as the watch does. Each iteration is one check:
//! - `authorize/allowed_literal`: WRITE on a topic the caller holds a literal allow for;
//! - `authorize/allowed_prefixed`: READ through a prefixed allow (the scan meets a deny first);
//! - `authorize/denied`: WRITE on a topic no entry allows (the whole scan, then the error);
//! - `authorize/off`: the same call without `--authorizer acl` (the price of the branch).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use strata_broker::security::acl::{AclEntry, Operation, PatternType, Permission, ResourceType};
use strata_broker::security::{acls, AuthModes, Principal, Security, SecurityConfig};
use strata_coordinator::EmbeddedCoordinator;

fn entries() -> Vec<AclEntry> {
    let entry = |principal: String, pattern, name: String, operation, permission| AclEntry {
        principal,
        resource: ResourceType::Topic,
        pattern,
        name,
        operation,
        permission,
    };
    let mut all = Vec::new();
    for u in 0..100 {
        let p = format!("User:user-{u}");
        for t in 0..6 {
            all.push(entry(
                p.clone(),
                PatternType::Literal,
                format!("topic-{u}-{t}"),
                Operation::Write,
                Permission::Allow,
            ));
        }
        all.push(entry(
            p.clone(),
            PatternType::Literal,
            format!("secret-{u}"),
            Operation::Read,
            Permission::Deny,
        ));
        all.push(entry(
            p.clone(),
            PatternType::Prefixed,
            format!("secret-{u}"),
            Operation::Describe,
            Permission::Deny,
        ));
        all.push(entry(
            p.clone(),
            PatternType::Prefixed,
            format!("shared-{u}-"),
            Operation::Read,
            Permission::Allow,
        ));
        all.push(entry(
            p,
            PatternType::Prefixed,
            "logs-".into(),
            Operation::Read,
            Permission::Allow,
        ));
    }
    for t in 0..5 {
        all.push(entry(
            "User:*".into(),
            PatternType::Literal,
            format!("public-{t}"),
            Operation::Read,
            Permission::Allow,
        ));
    }
    all
}

fn security(
    acl_authorizer: bool,
    store: &EmbeddedCoordinator,
    rt: &tokio::runtime::Runtime,
) -> Security {
    let security = Security::new(SecurityConfig {
        auth: AuthModes {
            password: true,
            mtls: false,
        },
        acl_authorizer,
        ..SecurityConfig::default()
    })
    .expect("a security config without TLS");
    rt.block_on(security.reload(store))
        .expect("loading the ACLs");
    security
}

fn authorize(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedCoordinator::open(dir.path(), "bench").expect("an embedded store");
    let entries = entries();
    let created = rt
        .block_on(acls::add(&store, &entries))
        .expect("storing the ACLs");
    assert_eq!(created as usize, entries.len());
    let on = security(true, &store, &rt);
    let off = security(false, &store, &rt);
    assert_eq!(on.acls.all().len(), entries.len());
    let caller = Principal::User("user-42".into());
    let mut group = c.benchmark_group("authorize");
    group.bench_function("allowed_literal", |b| {
        b.iter(|| {
            on.authorize(
                black_box(&caller),
                Operation::Write,
                ResourceType::Topic,
                black_box("topic-42-5"),
            )
            .unwrap()
        })
    });
    group.bench_function("allowed_prefixed", |b| {
        b.iter(|| {
            on.authorize(
                black_box(&caller),
                Operation::Read,
                ResourceType::Topic,
                black_box("logs-app"),
            )
            .unwrap()
        })
    });
    group.bench_function("denied", |b| {
        b.iter(|| {
            on.authorize(
                black_box(&caller),
                Operation::Write,
                ResourceType::Topic,
                black_box("payments"),
            )
            .unwrap_err()
        })
    });
    group.bench_function("off", |b| {
        b.iter(|| {
            off.authorize(
                black_box(&caller),
                Operation::Write,
                ResourceType::Topic,
                black_box("payments"),
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, authorize);
criterion_main!(benches);
