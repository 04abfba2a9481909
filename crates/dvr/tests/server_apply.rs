//! `dvr apply` / `dvr export` against a real `dvr server` on a generated
//! deployment (`dvr gen --hosts 8`: 8 compute hosts, 160 instances, 4
//! networks, 2 routers, floating IPs): the first apply creates everything, the
//! second changes nothing, and the exported file — like `plan --server` —
//! plans byte for byte like the applied file.

mod support;

use support::*;

fn plan(args: &[&str]) -> Vec<u8> {
    let out = dvr().args(["plan", "--format", "json"]).args(args).output().unwrap();
    assert!(out.status.success(), "dvr plan {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn apply_is_idempotent_and_export_plans_like_the_applied_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    let file = tmp.path().join("gen8.yaml");
    let out = dvr().args(["gen", "--hosts", "8"]).output().unwrap();
    std::fs::write(&file, &out.stdout).unwrap();
    let f = file.to_str().unwrap();

    let apply = || -> serde_json::Value {
        let out = dvr().args(["apply", "-f", f, "--server", &server.url, "--format", "json"]).output().unwrap();
        assert!(out.status.success(), "dvr apply: {}\nserver log:\n{}", String::from_utf8_lossy(&out.stderr), server.log_text());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = apply();
    let topo = dvr_model::load_file(&file).unwrap();
    assert_eq!(first["created"]["instance ports"], topo.instances.len(), "{first}");
    assert_eq!(first["created"]["floating IPs"], topo.floating_ips.len(), "{first}");
    assert_eq!(first["created"]["routers"], topo.routers.len(), "{first}");
    assert!(first["changes"].as_u64().unwrap() > 100, "{first}");
    let again = apply();
    assert_eq!(again["changes"], 0, "the second apply changed something: {again}");

    let out = dvr().args(["export", "--server", &server.url]).output().unwrap();
    assert!(out.status.success(), "dvr export: {}", String::from_utf8_lossy(&out.stderr));
    let exported = tmp.path().join("exported.yaml");
    std::fs::write(&exported, &out.stdout).unwrap();
    let want = plan(&["-t", f]);
    assert!(plan(&["-t", exported.to_str().unwrap()]) == want, "the exported file plans differently from the applied one");
    assert!(plan(&["--server", &server.url]) == want, "plan --server differs from planning the applied file");

    // Positive control: move one instance in the file; apply rebinds exactly that port
    // and the live plan follows (and no longer equals the old one).
    let mut spec = dvr_model::parse_spec("gen8", &std::fs::read_to_string(&file).unwrap()).unwrap();
    let moved = spec.instances.iter_mut().find(|x| x.host != "compute2").unwrap();
    moved.host = "compute2".into();
    std::fs::write(&file, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();
    let third = apply();
    assert_eq!(third["changes"], 1, "{third}");
    assert_eq!(third["updated"]["instance ports (host binding)"], 1, "{third}");
    let want = plan(&["-t", f]);
    assert!(plan(&["--server", &server.url]) == want, "after the move, plan --server differs from planning the file");
}
