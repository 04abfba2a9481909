//! Golden tests on the structure of the pictures: which elements exist, what
//! they are called and what they say, never where they are.

use dvr_draw::{Filter, build_scene, svg};
use dvr_plan::Profile;
use roxmltree::{Document, Node};

fn seed() -> (dvr_model::Topology, dvr_plan::Plan) {
    let t = dvr_model::seed();
    let p = dvr_plan::plan(&t, Profile::Walkthrough).unwrap();
    (t, p)
}

fn traced(t: &dvr_model::Topology, p: &dvr_plan::Plan, from: &str, to: &str, spoof_mac: Option<&str>) -> dvr_sim::Trace {
    let mut w = dvr_sim::World::build(t, p);
    dvr_sim::warm_up(&mut w);
    let req = dvr_sim::TraceRequest {
        from: from.into(),
        to: t.resolve_address(to).unwrap(),
        l4: dvr_sim::L4::Icmp { reply: false, id: 1 },
        spoof_ip: None,
        spoof_mac: spoof_mac.map(|m| m.parse().unwrap()),
    };
    dvr_sim::trace(&mut w, &req).unwrap()
}

/// Elements whose class list contains `class`.
fn of_class<'a, 'i>(doc: &'a Document<'i>, class: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants().filter(|n| n.attribute("class").is_some_and(|c| c.split(' ').any(|x| x == class))).collect()
}

fn texts(n: Node) -> Vec<String> {
    n.descendants().filter(|d| d.has_tag_name("text")).map(|d| d.text().unwrap_or("").to_string()).collect()
}

fn names(nodes: &[Node], host: &str) -> Vec<String> {
    nodes.iter().filter(|n| n.attribute("data-host") == Some(host)).map(|n| n.attribute("data-name").unwrap().to_string()).collect()
}

/// One line per drawn part: class, host, name and texts, in document order.
fn outline(svg: &str) -> String {
    let doc = Document::parse(svg).unwrap();
    let mut o = String::new();
    for g in doc.descendants().filter(|n| n.has_tag_name("g")) {
        let class = g.attribute("class").unwrap_or("");
        let who = [g.attribute("data-host"), g.attribute("data-name"), g.attribute("data-n"), g.attribute("data-place")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        o += &format!("{class} [{who}] {}\n", texts(g).join(" | "));
    }
    o
}

#[test]
fn seed_deployment_has_every_part_labelled() {
    let (t, p) = seed();
    let svg = svg::render(&build_scene(&t, &p, &Filter::default()));
    let doc = Document::parse(&svg).unwrap();
    let hosts: Vec<&str> = of_class(&doc, "host").iter().map(|n| n.attribute("data-name").unwrap()).collect();
    assert_eq!(hosts, ["network", "compute1", "compute2"], "every dataplane host is a box (the controller has none)");
    let bridges = of_class(&doc, "bridge");
    for h in &hosts {
        assert_eq!(names(&bridges, h), ["br-int", "br-vlan", "br-ex"], "{h}");
    }
    let vms = of_class(&doc, "instance");
    assert_eq!(names(&vms, "compute1"), ["vm1", "vm2", "vm4"]);
    assert_eq!(names(&vms, "compute2"), ["vm3", "vm5"]);
    let ns = of_class(&doc, "namespace");
    let kinds = |h: &str| -> Vec<String> {
        ns.iter()
            .filter(|n| n.attribute("data-host") == Some(h))
            .map(|n| n.attribute("class").unwrap().trim_start_matches("namespace ").to_string())
            .collect()
    };
    assert_eq!(kinds("compute1"), ["qrouter", "fip"]);
    assert!(kinds("network").contains(&"snat".to_string()) && kinds("network").contains(&"qdhcp".to_string()), "{:?}", kinds("network"));
    // Labels: DVR MACs, local VLANs, addresses, networks with their segments.
    for h in &t.hosts[1..] {
        let mac = h.dvr_mac.unwrap().to_string();
        let host = of_class(&doc, "host").into_iter().find(|n| n.attribute("data-name") == Some(&h.name)).unwrap();
        assert!(texts(host).contains(&format!("DVR MAC {mac}")), "{}", h.name);
    }
    let brint =
        bridges.iter().find(|n| n.attribute("data-host") == Some("compute1") && n.attribute("data-name") == Some("br-int")).unwrap();
    assert!(texts(*brint).iter().any(|s| s.starts_with("local VLANs test1=1, test2=2")), "{:?}", texts(*brint));
    let qr = ns.iter().find(|n| n.attribute("data-host") == Some("compute1") && n.attribute("class") == Some("namespace qrouter")).unwrap();
    assert!(texts(*qr).iter().any(|s| s.contains("192.168.1.1/24")), "{:?}", texts(*qr));
    let nets: Vec<String> = of_class(&doc, "network").iter().flat_map(|n| texts(*n)).collect();
    assert_eq!(nets, ["physnet1: test1 VLAN 196, test2 VLAN 148", "extnet: external flat"]);
    assert_eq!(of_class(&doc, "nic").len(), 6, "eth1 and eth2 on each host");
    assert_eq!(of_class(&doc, "uplink").len(), 6 + 2, "each NIC and each outside machine on its network");
    assert_eq!(of_class(&doc, "patch").len(), 6, "br-int to br-vlan and br-ex on each host");
    let fips = of_class(&doc, "fip").len();
    assert_eq!(fips, 3, "a fip namespace on every host of the external network");
    assert_eq!(of_class(&doc, "veth").len(), fips, "rfp- ↔ fpr- beside each fip namespace");
    assert!(of_class(&doc, "path").is_empty(), "no overlay without a trace");
    insta::assert_snapshot!("seed_outline", outline(&svg));
}

#[test]
fn traced_path_is_numbered_in_two_colours_with_rewrites() {
    let (t, p) = seed();
    let tr = traced(&t, &p, "vm1", "vm5", None);
    let mut sc = build_scene(&t, &p, &Filter::crossed_by(&tr));
    sc.overlay(&tr, "vm1", "vm5");
    let svg = svg::render(&sc);
    let doc = Document::parse(&svg).unwrap();
    let hosts: Vec<&str> = of_class(&doc, "host").iter().map(|n| n.attribute("data-name").unwrap()).collect();
    assert_eq!(hosts, ["compute1", "compute2"], "only the hosts the path crosses");
    for dir in ["request", "reply"] {
        let path = of_class(&doc, "path").into_iter().find(|n| n.attribute("class") == Some(&format!("path {dir}") as &str)).unwrap();
        let pts = path.first_element_child().unwrap().attribute("points").unwrap().split(' ').count();
        assert!(pts >= 6, "{dir}: {pts} points");
        let marks: Vec<Node> = of_class(&doc, "hop").into_iter().filter(|n| n.attribute("class").unwrap().ends_with(dir)).collect();
        let numbers: Vec<usize> = marks.iter().map(|n| n.attribute("data-n").unwrap().parse().unwrap()).collect();
        assert_eq!(numbers, (1..=marks.len()).collect::<Vec<_>>(), "{dir}: numbered in order");
    }
    let notes: Vec<String> =
        of_class(&doc, "hop").iter().filter(|n| n.attribute("class") == Some("hop request")).flat_map(|n| texts(*n)).collect();
    assert!(notes.contains(&"src MAC → DVR MAC of compute1".to_string()), "{notes:?}");
    assert!(notes.contains(&"VLAN 2→148".to_string()), "{notes:?}");
    assert!(notes.contains(&"VLAN 148 on the wire".to_string()), "{notes:?}");
    assert!(of_class(&doc, "drop").is_empty(), "nothing dropped");
    let legend = texts(of_class(&doc, "legend")[0]);
    assert!(legend.iter().any(|l| l == "vm1 → vm5: delivered to vm5"), "{legend:?}");
    assert!(legend.iter().any(|l| l == "reply vm5 → vm1: delivered to vm1"), "{legend:?}");
    insta::assert_snapshot!("vm1_vm5_outline", outline(&svg));
}

#[test]
fn a_drop_is_marked_where_it_happens() {
    let (t, p) = seed();
    let tr = traced(&t, &p, "vm1", "vm2", Some("fa:16:3e:00:00:99"));
    let mut sc = build_scene(&t, &p, &Filter::crossed_by(&tr));
    sc.overlay(&tr, "vm1", "vm2");
    let doc_text = svg::render(&sc);
    let doc = Document::parse(&doc_text).unwrap();
    let drops = of_class(&doc, "drop");
    assert_eq!(drops.len(), 1);
    let why = texts(drops[0]).join(" ");
    assert!(why.contains("compute1 br-int") && why.contains("table 25"), "{why}");
    let n = drops[0].attribute("data-n").unwrap();
    let mark = of_class(&doc, "hop").into_iter().find(|m| m.attribute("data-n") == Some(n)).unwrap();
    assert_eq!(mark.attribute("data-place"), Some("compute1 br-int"));
}

#[test]
fn host_filter_keeps_a_large_deployment_readable() {
    let yaml = dvr_model::r#gen::generate_yaml(&dvr_model::r#gen::GenParams::scale(100));
    let t = dvr_model::load_str("gen", &yaml).unwrap();
    let p = dvr_plan::plan(&t, Profile::Walkthrough).unwrap();
    let one = t.hosts.iter().find(|h| h.name.starts_with("compute")).unwrap().name.clone();
    let svg = svg::render(&build_scene(&t, &p, &Filter { hosts: Some(vec![one.clone()]) }));
    let doc = Document::parse(&svg).unwrap();
    assert_eq!(of_class(&doc, "host").len(), 1);
    let hix = t.host_ix(&one).unwrap();
    assert_eq!(of_class(&doc, "instance").len(), t.instances.iter().filter(|x| x.host == hix).count(), "its instances");
    let legend = texts(of_class(&doc, "legend")[0]).join(" ");
    assert!(legend.contains("100 more hosts not shown"), "{legend}");
    // A demo path of the generated file, drawn with only the hosts it crosses.
    let path = &t.paths[0];
    let tr = traced(&t, &p, &path.from, &path.to, None);
    let mut sc = build_scene(&t, &p, &Filter::crossed_by(&tr));
    sc.overlay(&tr, &path.from, &path.to);
    let doc_text = svg::render(&sc);
    let doc = Document::parse(&doc_text).unwrap();
    assert!((1..=3).contains(&of_class(&doc, "host").len()));
    assert!(!of_class(&doc, "hop").is_empty());
}

#[test]
fn dot_has_a_cluster_per_host_and_the_numbered_path() {
    let (t, p) = seed();
    let tr = traced(&t, &p, "vm1", "vm5", None);
    let dot = dvr_draw::dot::render(&t, &p, &Filter::default(), Some(&tr));
    for h in ["network", "compute1", "compute2"] {
        assert!(dot.contains(&format!("subgraph \"cluster_{h}\"")), "{h}");
    }
    assert!(!dot.contains("cluster_controller"));
    assert!(dot.contains("\"compute1/vm1\" -> \"compute1/br-int\" [label=\"tag 1\"]"), "{dot}");
    assert!(dot.contains("\"physnet/physnet1\""));
    assert!(dot.contains("color=\"#1f6feb\", penwidth=2.5, label=\"1\""), "request edges numbered");
    assert!(dot.contains("color=\"#e8590c\""), "reply edges");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
}
